/**
 * The seccomp policy for sandboxed kernels: a denylist on top of bwrap's namespaces. What is
 * denied is kernel attack surface that notebook code has no use for, or that could reach past
 * the sandbox if the namespaces alone were not enough. Everything not named here is allowed.
 *
 * seccomp.ts compiles this into a classic-BPF program; nothing here is read at run time from
 * the host. Syscall numbers come from the kernel UAPI headers (linux-libc-dev 6.1:
 * asm/unistd_64.h for x86_64, asm-generic/unistd.h for aarch64), except open_tree_attr (6.15),
 * which those headers predate: it is 467 on both, from the kernels' syscall tables.
 */

export type Action = 'allow' | 'kill' | { errno: number };

export const EPERM = 1;
export const ENOSYS = 38;
const deny: Action = { errno: EPERM };

/**
 * One rule per syscall. Without a condition the action applies to every call; with one it
 * applies when the condition holds, and the call is allowed otherwise. Conditions read the low
 * 32 bits of an argument, which is exactly what the kernel uses for each argument tested here
 * (ioctl's `unsigned int cmd`, personality's `unsigned int`, and clone, which takes
 * `lower_32_bits(clone_flags)`).
 */
export type Rule =
  | { syscall: string; action: Action }
  /** when (args[arg] & anyBit) != 0 */
  | { syscall: string; action: Action; arg: number; anyBit: number }
  /** when args[arg] is one of the values */
  | { syscall: string; action: Action; arg: number; oneOf: number[] }
  /** when args[arg] is none of the values */
  | { syscall: string; action: Action; arg: number; noneOf: number[] };

const CLONE_NEWTIME = 0x00000080;
const CLONE_NEWNS = 0x00020000;
const CLONE_NEWCGROUP = 0x02000000;
const CLONE_NEWUTS = 0x04000000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;
export const CLONE_NAMESPACES =
  CLONE_NEWTIME |
  CLONE_NEWNS |
  CLONE_NEWCGROUP |
  CLONE_NEWUTS |
  CLONE_NEWIPC |
  CLONE_NEWUSER |
  CLONE_NEWPID |
  CLONE_NEWNET;

export const TIOCSTI = 0x5412;
export const TIOCLINUX = 0x541c;

const all = (action: Action, ...syscalls: string[]): Rule[] =>
  syscalls.map((syscall) => ({ syscall, action }));

/**
 * Checked in this order (a linear chain), so the argument-dependent rules, whose syscalls the
 * kernel cannot cache as always-allowed, come first: ioctl and clone are called often.
 */
export const RULES: Rule[] = [
  // Faking terminal input (TIOCSTI) or driving the Linux console (TIOCLINUX): a way out of a
  // sandbox that shares a terminal with something outside.
  { syscall: 'ioctl', action: deny, arg: 1, oneOf: [TIOCSTI, TIOCLINUX] },
  // New namespaces: new user namespaces are the gateway to most kernel privilege-escalation
  // bugs; the sandbox never needs any namespace of its own.
  { syscall: 'clone', action: deny, arg: 0, anyBit: CLONE_NAMESPACES },
  // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes glibc (and
  // anything careful) fall back to clone, whose flags are checked above.
  ...all({ errno: ENOSYS }, 'clone3'),
  ...all(deny, 'unshare', 'setns'),
  // Execution domains: only the query (0xffffffff) and plain PER_LINUX (0). Others (READ_IMPLIES_EXEC,
  // ADDR_NO_RANDOMIZE, ...) weaken memory protections or have carried kernel bugs.
  { syscall: 'personality', action: deny, arg: 0, noneOf: [0, 0xffffffff] },
  // io_uring: a large, bug-prone kernel surface that also bypasses syscall filtering.
  ...all(deny, 'io_uring_setup', 'io_uring_enter', 'io_uring_register'),
  // eBPF, userfaultfd and perf: favourite tools for kernel exploits (and perf leaks addresses).
  ...all(deny, 'bpf', 'userfaultfd', 'perf_event_open'),
  // Kernel keyrings are not namespaced.
  ...all(deny, 'add_key', 'request_key', 'keyctl'),
  // Mounts and the root directory: the filesystem view is bwrap's to set up, not the code's.
  ...all(deny, 'mount', 'umount2', 'mount_setattr', 'move_mount', 'open_tree', 'open_tree_attr'),
  ...all(deny, 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'pivot_root', 'chroot'),
  // Other processes' memory, descriptors and state (the uid pool already separates kernels;
  // this also closes debugging tricks against our own bwrap pid 1).
  ...all(deny, 'ptrace', 'process_vm_readv', 'process_vm_writev', 'pidfd_getfd', 'kcmp'),
  // Kernel code and the machine itself.
  ...all(deny, 'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module'),
  ...all(deny, 'reboot', 'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd', 'syslog'),
  // The clock and host names.
  ...all(deny, 'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex'),
  ...all(deny, 'sethostname', 'setdomainname'),
  // File handles open any inode by number, sidestepping the mount namespace.
  ...all(deny, 'open_by_handle_at', 'name_to_handle_at'),
  // fanotify watches whole filesystems.
  ...all(deny, 'fanotify_init'),
  // Obsolete or hardware interfaces nobody needs.
  ...all(deny, 'lookup_dcookie', 'vhangup', 'nfsservctl', 'uselib', 'ustat', 'sysfs', '_sysctl'),
  ...all(deny, 'iopl', 'ioperm'),
];

export interface ArchPolicy {
  /** AUDIT_ARCH_* of the native ABI; any other (i386 via int 0x80, arm32 compat) is killed. */
  auditArch: number;
  /** x86_64 only: the x32 ABI marks its syscall numbers with this bit; they are all denied. */
  x32Bit?: number;
  /** Syscall numbers of every syscall RULES names, or null where the arch has no such call. */
  syscalls: Record<string, number | null>;
}

export const ARCHES: Partial<Record<NodeJS.Architecture, ArchPolicy>> = {
  x64: {
    auditArch: 0xc000003e, // AUDIT_ARCH_X86_64
    x32Bit: 0x40000000, // __X32_SYSCALL_BIT
    syscalls: {
      ioctl: 16,
      clone: 56,
      clone3: 435,
      unshare: 272,
      setns: 308,
      personality: 135,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      bpf: 321,
      userfaultfd: 323,
      perf_event_open: 298,
      add_key: 248,
      request_key: 249,
      keyctl: 250,
      mount: 165,
      umount2: 166,
      mount_setattr: 442,
      move_mount: 429,
      open_tree: 428,
      open_tree_attr: 467,
      fsopen: 430,
      fsconfig: 431,
      fsmount: 432,
      fspick: 433,
      pivot_root: 155,
      chroot: 161,
      ptrace: 101,
      process_vm_readv: 310,
      process_vm_writev: 311,
      pidfd_getfd: 438,
      kcmp: 312,
      kexec_load: 246,
      kexec_file_load: 320,
      init_module: 175,
      finit_module: 313,
      delete_module: 176,
      reboot: 169,
      swapon: 167,
      swapoff: 168,
      acct: 163,
      quotactl: 179,
      quotactl_fd: 443,
      syslog: 103,
      settimeofday: 164,
      clock_settime: 227,
      clock_adjtime: 305,
      adjtimex: 159,
      sethostname: 170,
      setdomainname: 171,
      open_by_handle_at: 304,
      name_to_handle_at: 303,
      fanotify_init: 300,
      lookup_dcookie: 212,
      vhangup: 153,
      nfsservctl: 180,
      uselib: 134,
      ustat: 136,
      sysfs: 139,
      _sysctl: 156,
      iopl: 172,
      ioperm: 173,
    },
  },
  arm64: {
    auditArch: 0xc00000b7, // AUDIT_ARCH_AARCH64
    syscalls: {
      ioctl: 29,
      clone: 220,
      clone3: 435,
      unshare: 97,
      setns: 268,
      personality: 92,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      bpf: 280,
      userfaultfd: 282,
      perf_event_open: 241,
      add_key: 217,
      request_key: 218,
      keyctl: 219,
      mount: 40,
      umount2: 39,
      mount_setattr: 442,
      move_mount: 429,
      open_tree: 428,
      open_tree_attr: 467,
      fsopen: 430,
      fsconfig: 431,
      fsmount: 432,
      fspick: 433,
      pivot_root: 41,
      chroot: 51,
      ptrace: 117,
      process_vm_readv: 270,
      process_vm_writev: 271,
      pidfd_getfd: 438,
      kcmp: 272,
      kexec_load: 104,
      kexec_file_load: 294,
      init_module: 105,
      finit_module: 273,
      delete_module: 106,
      reboot: 142,
      swapon: 224,
      swapoff: 225,
      acct: 89,
      quotactl: 60,
      quotactl_fd: 443,
      syslog: 116,
      settimeofday: 170,
      clock_settime: 112,
      clock_adjtime: 266,
      adjtimex: 171,
      sethostname: 161,
      setdomainname: 162,
      open_by_handle_at: 265,
      name_to_handle_at: 264,
      fanotify_init: 262,
      lookup_dcookie: 18,
      vhangup: 58,
      nfsservctl: 42,
      // Not in the generic syscall table.
      uselib: null,
      ustat: null,
      sysfs: null,
      _sysctl: null,
      iopl: null,
      ioperm: null,
    },
  },
};
