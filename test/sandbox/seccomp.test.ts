/**
 * The seccomp filter: its structure, its decisions (by running the program in a tiny BPF
 * interpreter for every syscall number), its syscall tables against the kernel headers, and then
 * real bwrap with real programs: denied calls fail with EPERM (and succeed or fail differently
 * without the filter), while Python, its threads, fork, subprocess, multiprocessing and Node
 * keep working.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  MAX_INSTRUCTIONS,
  seccompFilter,
  seccompProgram,
  type Instruction,
} from '../../src/sandbox/seccomp.ts';
import {
  ARCHES,
  CLONE_NAMESPACES,
  RULES,
  TIOCLINUX,
  TIOCSTI,
  type Action,
} from '../../src/sandbox/seccomp-policy.ts';

const KILL_PROCESS = 0x80000000;
const ALLOW = 0x7fff0000;
const ERRNO = (e: number) => 0x00050000 | e;
const EPERM = ERRNO(1);
const ENOSYS = ERRNO(38);
const ARCH_LIST = ['x64', 'arm64'] as const;

/** Runs a filter on one struct seccomp_data, as the kernel would. */
function run(program: Instruction[], nr: number, arch: number, args: bigint[] = []): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(nr | 0, 0);
  data.writeUInt32LE(arch, 4);
  args.forEach((a, i) => data.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i));
  let a = 0;
  for (let pc = 0; pc < program.length; pc++) {
    const ins = program[pc]!;
    switch (ins.code) {
      case 0x20: // ld [k]
        if (ins.k % 4 !== 0 || ins.k > 60) throw new Error(`bad load offset ${ins.k}`);
        a = data.readUInt32LE(ins.k);
        break;
      case 0x15:
        pc += a === ins.k ? ins.jt : ins.jf;
        break;
      case 0x35:
        pc += a >= ins.k ? ins.jt : ins.jf;
        break;
      case 0x45:
        pc += (a & ins.k) !== 0 ? ins.jt : ins.jf;
        break;
      case 0x06:
        return ins.k;
      default:
        throw new Error(`unexpected opcode ${ins.code}`);
    }
  }
  throw new Error('fell off the end of the program');
}

const value = (action: Action) =>
  action === 'allow' ? ALLOW : action === 'kill' ? KILL_PROCESS : ERRNO(action.errno);

describe('seccomp program', () => {
  for (const arch of ARCH_LIST) {
    it(`is well formed for ${arch}`, () => {
      const program = seccompProgram(arch);
      expect(program.length).toBeLessThanOrEqual(MAX_INSTRUCTIONS);
      expect(program.length).toBeLessThan(200);
      expect(program.at(-1)!.code).toBe(0x06);
      program.forEach((ins, pc) => {
        expect([0x20, 0x15, 0x35, 0x45, 0x06]).toContain(ins.code);
        for (const off of [ins.jt, ins.jf]) {
          expect(Number.isInteger(off) && off >= 0 && off <= 255).toBe(true);
          if (ins.code !== 0x06 && ins.code !== 0x20) expect(pc + 1 + off).toBeLessThan(program.length);
        }
        if (ins.code === 0x06 || ins.code === 0x20) expect([ins.jt, ins.jf]).toEqual([0, 0]);
      });
      const bytes = seccompFilter(arch);
      expect(bytes.length).toBe(program.length * 8);
      // struct sock_filter, little-endian: ld [4] (the arch) comes first.
      expect([...bytes.subarray(0, 8)]).toEqual([0x20, 0, 0, 0, 4, 0, 0, 0]);
      expect(bytes.readUInt32LE(12)).toBe(ARCHES[arch]!.auditArch);
    });
  }

  it('refuses an architecture it has no table for', () => {
    expect(() => seccompFilter('ia32')).toThrow(/no syscall table for architecture ia32/);
    expect(() => seccompFilter('riscv64')).toThrow(/supported: x64, arm64/);
  });

  for (const arch of ARCH_LIST) {
    it(`decides every syscall as the policy says on ${arch}`, () => {
      const { auditArch, syscalls, x32Bit } = ARCHES[arch]!;
      const program = seccompProgram(arch);
      const byNr = new Map<number, (typeof RULES)[number]>();
      for (const rule of RULES) {
        const nr = syscalls[rule.syscall];
        expect(nr, `${rule.syscall} on ${arch}`).not.toBeUndefined();
        if (nr !== null && nr !== undefined) {
          expect(byNr.has(nr), `two rules for ${nr}`).toBe(false);
          byNr.set(nr, rule);
        }
      }
      for (let nr = 0; nr < 1024; nr++) {
        const rule = byNr.get(nr);
        const expected = rule && !('arg' in rule) ? value(rule.action) : ALLOW;
        expect(run(program, nr, auditArch), `nr ${nr}`).toBe(expected);
      }
      // Another ABI (i386 int 0x80, arm32 compat) is killed, whatever the call.
      for (const other of [0x40000003, 0x40000028, 0xc00000b7, 0xc000003e].filter((a) => a !== auditArch))
        expect(run(program, syscalls.ioctl!, other)).toBe(KILL_PROCESS);
      // x32 numbers are refused on x86_64; on aarch64 such numbers are just unknown (allowed: ENOSYS).
      expect(run(program, 0x40000000 + 39, auditArch)).toBe(x32Bit ? EPERM : ALLOW);
      expect(run(program, 0x40000000 + syscalls.ioctl!, auditArch, [0n, BigInt(TIOCSTI)])).toBe(
        x32Bit ? EPERM : ALLOW,
      );
      expect(run(program, -1, auditArch)).toBe(x32Bit ? EPERM : ALLOW);

      const clone = syscalls.clone!;
      const threadFlags = 0x3d0f00n; // what glibc's pthread_create passes
      expect(run(program, clone, auditArch, [threadFlags])).toBe(ALLOW);
      expect(run(program, clone, auditArch, [0x01200011n])).toBe(ALLOW); // fork()
      for (let bit = 0; bit < 32; bit++) {
        const flag = 1 << bit;
        expect(run(program, clone, auditArch, [BigInt((flag | 17) >>> 0)])).toBe(
          (CLONE_NAMESPACES & flag) !== 0 ? EPERM : ALLOW,
        );
      }
      expect(run(program, clone, auditArch, [0x10000000n | threadFlags])).toBe(EPERM);
      // The kernel ignores the upper half of clone's flags, ioctl's cmd and personality's argument.
      expect(run(program, clone, auditArch, [0x10000000n << 32n])).toBe(ALLOW);
      expect(run(program, syscalls.clone3!, auditArch)).toBe(ENOSYS);

      const ioctl = syscalls.ioctl!;
      expect(run(program, ioctl, auditArch, [0n, BigInt(TIOCSTI)])).toBe(EPERM);
      expect(run(program, ioctl, auditArch, [0n, BigInt(TIOCLINUX)])).toBe(EPERM);
      expect(run(program, ioctl, auditArch, [0n, (1n << 32n) | BigInt(TIOCSTI)])).toBe(EPERM);
      expect(run(program, ioctl, auditArch, [3n, 0x5413n])).toBe(ALLOW); // TIOCGWINSZ
      expect(run(program, ioctl, auditArch, [3n, 0x541bn])).toBe(ALLOW); // FIONREAD

      const personality = syscalls.personality!;
      expect(run(program, personality, auditArch, [0xffffffffn])).toBe(ALLOW);
      expect(run(program, personality, auditArch, [0n])).toBe(ALLOW);
      expect(run(program, personality, auditArch, [0xffffffff_00000000n])).toBe(ALLOW);
      expect(run(program, personality, auditArch, [8n])).toBe(EPERM); // PER_LINUX32
      expect(run(program, personality, auditArch, [0x0040000n])).toBe(EPERM); // ADDR_NO_RANDOMIZE
    });
  }
});

describe('seccomp syscall tables', () => {
  function headerNumbers(path: string): Map<string, number> {
    const numbers = new Map<string, number>();
    for (const m of readFileSync(path, 'utf8').matchAll(/^#define __NR_(\w+)\s+(\d+)\s*$/gm))
      numbers.set(m[1]!, Number(m[2]));
    return numbers;
  }
  const headers = {
    x64: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h',
    arm64: '/usr/include/asm-generic/unistd.h',
  };
  for (const arch of ARCH_LIST) {
    it.runIf(existsSync(headers[arch]))(`match ${headers[arch]}`, () => {
      const fromHeader = headerNumbers(headers[arch]);
      let checked = 0;
      for (const [name, nr] of Object.entries(ARCHES[arch]!.syscalls)) {
        const expected = fromHeader.get(name);
        // Only syscalls newer than the installed headers may be missing from them.
        if (expected === undefined && nr !== null && nr > 450) continue;
        expect(nr, name).toBe(expected ?? null);
        checked++;
      }
      expect(checked).toBeGreaterThan(50);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Real bwrap.

const BWRAP = '/usr/bin/bwrap';
const asRoot = process.getuid?.() === 0;
/** Our own uid from the test range 62100-62199, so no other test's sandboxes are ours to signal. */
const UID = 62117;
const canRun = existsSync(BWRAP) && ARCHES[process.arch] !== undefined && process.platform === 'linux';

function sandboxed(
  argv: string[],
  { filter = true, env = {} }: { filter?: boolean; env?: Record<string, string> } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const bwrapArgs = [
    '--unshare-all',
    '--die-with-parent',
    '--ro-bind',
    '/usr',
    '/usr',
    '--symlink',
    'usr/lib',
    '/lib',
    '--symlink',
    'usr/lib64',
    '/lib64',
    '--symlink',
    'usr/bin',
    '/bin',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--tmpfs',
    '/tmp',
    '--tmpfs',
    '/dev/shm',
    ...(filter ? ['--seccomp', '3'] : []),
    '--',
    ...argv,
  ];
  const drop = asRoot
    ? [
        '/usr/bin/setpriv',
        `--reuid=${UID}`,
        `--regid=${UID}`,
        '--clear-groups',
        '--inh-caps=-all',
        '--bounding-set=-all',
        '--no-new-privs',
      ]
    : [];
  const cmd = [...drop, BWRAP, ...bwrapArgs];
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env });
  // bwrap reads the whole program from fd 3, to EOF, before it starts the sandbox.
  const fd3 = child.stdio[3] as Writable;
  fd3.on('error', () => {});
  fd3.end(filter ? seccompFilter() : undefined);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Each probe runs in a forked child and reports its errno name ('0' when the call succeeded). */
const PROBES = String.raw`
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
N = json.loads(sys.argv[1])
S = ctypes.c_char_p

def sc(name, *args):
    nr = N[name] if isinstance(name, str) else name
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return 0 if r >= 0 else ctypes.get_errno()

def clone(flags):
    # | SIGCHLD, no new stack: a fork that asks for new namespaces
    pid = libc.syscall(ctypes.c_long(N['clone']), ctypes.c_long(flags | 17), *[ctypes.c_long(0)] * 4)
    if pid == 0:
        os._exit(0)
    if pid < 0:
        return ctypes.get_errno()
    os.waitpid(pid, 0)
    return 0

def tty_ioctl(cmd):
    import fcntl, termios
    master, slave = os.openpty()
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # our controlling terminal: TIOCSTI works on it
    try:
        fcntl.ioctl(slave, cmd, b'x')
        return 0
    except OSError as e:
        return e.errno

PROBES = {
    'unshare(CLONE_NEWUSER)': lambda: sc('unshare', 0x10000000),
    'unshare(0)': lambda: sc('unshare', 0),
    'setns': lambda: sc('setns', -1, 0),
    'clone(CLONE_NEWUSER)': lambda: clone(0x10000000),
    'clone(CLONE_NEWNET)': lambda: clone(0x40000000),
    'clone3': lambda: sc('clone3', 0, 0),
    'mount': lambda: sc('mount', 0, 0, 0, 0, 0),
    'umount2': lambda: sc('umount2', 0, 0),
    'chroot': lambda: sc('chroot', S(b'/nonexistent')),
    'pivot_root': lambda: sc('pivot_root', 0, 0),
    'open_tree': lambda: sc('open_tree', -100, S(b'/'), 0),
    'fsopen': lambda: sc('fsopen', 0, 0),
    'fsconfig': lambda: sc('fsconfig', -1, 0, 0, 0, 0),
    'mount_setattr': lambda: sc('mount_setattr', -1, 0, 0, 0, 0),
    'ptrace(PTRACE_TRACEME)': lambda: sc('ptrace', 0, 0, 0, 0),
    'process_vm_readv': lambda: sc('process_vm_readv', os.getpid(), 0, 0, 0, 0, 0),
    'pidfd_getfd': lambda: sc('pidfd_getfd', -1, 0, 0),
    'kcmp': lambda: sc('kcmp', os.getpid(), os.getpid(), 0, 0, 0),
    'io_uring_setup': lambda: sc('io_uring_setup', 1, 0),
    'bpf': lambda: sc('bpf', 9999, 0, 0),
    'userfaultfd': lambda: sc('userfaultfd', 1),  # UFFD_USER_MODE_ONLY
    'perf_event_open': lambda: sc('perf_event_open', 0, 0, -1, -1, 0),
    'keyctl': lambda: sc('keyctl', 0, -3, 0),  # KEYCTL_GET_KEYRING_ID, session keyring
    'add_key': lambda: sc('add_key', 0, 0, 0, 0, 0),
    'sethostname': lambda: sc('sethostname', S(b'x'), 1),
    'clock_settime': lambda: sc('clock_settime', 0, 0),
    'settimeofday': lambda: sc('settimeofday', 1, 0),
    'personality(PER_LINUX32)': lambda: sc('personality', 8),
    'open_by_handle_at': lambda: sc('open_by_handle_at', -1, 0, 0),
    'name_to_handle_at': lambda: sc('name_to_handle_at', -100, S(b'/'), 0, 0, 0),
    'init_module': lambda: sc('init_module', 0, 0, 0),
    'ioctl(TIOCSTI)': lambda: tty_ioctl(0x5412),
    'ioctl(TIOCLINUX)': lambda: tty_ioctl(0x541c),
    'x32 getpid': lambda: sc(0x40000000 + 39),  # x86_64 only
    # Allowed:
    'personality(query)': lambda: sc('personality', 0xffffffff),
    'personality(0)': lambda: sc('personality', 0),
    'ioctl(FIONREAD)': lambda: tty_ioctl(0x541b),
}

if 'x32' not in sys.argv[2:]:
    del PROBES['x32 getpid']

def probe(fn):
    pid = os.fork()
    if pid == 0:
        try:
            code = fn()
        except BaseException:
            code = 250
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

print(json.dumps({name: errno.errorcode.get(e, str(e)) for name, e in ((n, probe(f)) for n, f in PROBES.items())}))
`;

/** What each probe must give under the filter. */
const DENIED: Record<string, string> = {
  'unshare(CLONE_NEWUSER)': 'EPERM',
  'unshare(0)': 'EPERM',
  setns: 'EPERM',
  'clone(CLONE_NEWUSER)': 'EPERM',
  'clone(CLONE_NEWNET)': 'EPERM',
  clone3: 'ENOSYS',
  mount: 'EPERM',
  umount2: 'EPERM',
  chroot: 'EPERM',
  pivot_root: 'EPERM',
  open_tree: 'EPERM',
  fsopen: 'EPERM',
  fsconfig: 'EPERM',
  mount_setattr: 'EPERM',
  'ptrace(PTRACE_TRACEME)': 'EPERM',
  process_vm_readv: 'EPERM',
  pidfd_getfd: 'EPERM',
  kcmp: 'EPERM',
  io_uring_setup: 'EPERM',
  bpf: 'EPERM',
  userfaultfd: 'EPERM',
  perf_event_open: 'EPERM',
  keyctl: 'EPERM',
  add_key: 'EPERM',
  sethostname: 'EPERM',
  clock_settime: 'EPERM',
  settimeofday: 'EPERM',
  'personality(PER_LINUX32)': 'EPERM',
  open_by_handle_at: 'EPERM',
  name_to_handle_at: 'EPERM',
  init_module: 'EPERM',
  'ioctl(TIOCSTI)': 'EPERM',
  'ioctl(TIOCLINUX)': 'EPERM',
  'x32 getpid': 'EPERM',
};

/** Probes whose arguments make the kernel itself fail differently (or succeed) without the
 * filter, so the EPERM above is the filter's doing and not a missing capability. */
const NOT_EPERM_WITHOUT_FILTER = [
  'unshare(0)',
  'setns',
  'clone3',
  'mount',
  'umount2',
  'chroot',
  'open_tree',
  'fsconfig',
  'mount_setattr',
  'process_vm_readv',
  'pidfd_getfd',
  'kcmp',
  'perf_event_open',
  'add_key',
  'clock_settime',
  'settimeofday',
  'personality(PER_LINUX32)',
  'name_to_handle_at',
  'ioctl(TIOCLINUX)',
  'x32 getpid',
];

function probes(filter: boolean) {
  const syscalls = JSON.stringify(ARCHES[process.arch]!.syscalls);
  const argv = ['/usr/bin/python3', '-I', '-c', PROBES, syscalls, ...(process.arch === 'x64' ? ['x32'] : [])];
  return sandboxed(argv, { filter });
}

describe.runIf(canRun)('seccomp under bwrap', () => {
  it('denies each forbidden call, where the kernel alone would not', async () => {
    const [on, off] = await Promise.all([probes(true), probes(false)]);
    expect(on.stderr).toBe('');
    expect(on.code).toBe(0);
    expect(off.code).toBe(0);
    const withFilter = JSON.parse(on.stdout) as Record<string, string>;
    const without = JSON.parse(off.stdout) as Record<string, string>;
    const expected: Record<string, string> = {
      ...DENIED,
      'personality(query)': '0',
      'personality(0)': '0',
      'ioctl(FIONREAD)': '0',
    };
    if (process.arch !== 'x64') delete expected['x32 getpid'];
    expect(withFilter).toEqual(expected);
    for (const name of NOT_EPERM_WITHOUT_FILTER) {
      if (name in expected) expect(without[name], name).not.toBe('EPERM');
    }
  });

  it('keeps Python, threads, fork, subprocess and multiprocessing working', async () => {
    const r = await sandboxed([
      '/usr/bin/python3',
      '-I',
      '-c',
      `
import json, multiprocessing, os, subprocess, threading
out = {}
t = threading.Thread(target=lambda: out.__setitem__('thread', True))
t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
out['fork'] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
out['subprocess'] = subprocess.run(['/bin/echo', 'ok'], capture_output=True, text=True).stdout.strip()
with multiprocessing.Pool(2) as pool:
    out['pool'] = pool.map(abs, [-1, -2, -3])
out['seccomp'] = [l.split(':')[1].strip() for l in open('/proc/self/status') if l.startswith('Seccomp:')]
print(json.dumps(out))
`,
    ]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      thread: true,
      fork: 7,
      subprocess: 'ok',
      pool: [1, 2, 3],
      seccomp: ['2'], // SECCOMP_MODE_FILTER
    });
  });

  const NODE_SNIPPET = `
const fs = require('fs'), fsp = require('fs/promises'), { Worker } = require('worker_threads');
(async () => {
  const dir = fs.mkdtempSync('/tmp/x');
  await Promise.all(Array.from({ length: 200 }, (_, i) => fsp.writeFile(dir + '/f' + i, 'y'.repeat(i))));
  let bytes = 0;
  for (const f of await fsp.readdir(dir)) bytes += (await fsp.readFile(dir + '/' + f)).length;
  fs.rmSync(dir, { recursive: true });
  const w = new Worker('require("worker_threads").parentPort.postMessage(6 * 7)', { eval: true });
  const fromWorker = await new Promise((resolve) => w.once('message', resolve));
  const child = require('child_process').execFileSync('/bin/echo', ['ok']).toString().trim();
  console.log(JSON.stringify({ bytes, fromWorker, child }));
})();
`;

  // libuv 1.45+ can use io_uring (Node 20 only with UV_USE_IO_URING=1): it must fall back to the
  // thread pool when io_uring_setup fails.
  for (const env of [{}, { UV_USE_IO_URING: '1' }] as Record<string, string>[]) {
    it(`keeps Node working, fs and worker threads included (${JSON.stringify(env)})`, async () => {
      const r = await sandboxed(['/usr/bin/node', '-e', NODE_SNIPPET], { env });
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toEqual({ bytes: 19900, fromWorker: 42, child: 'ok' });
    });
  }
});
