/**
 * BwrapSandbox: every process in its own user, pid, network, mount, ipc, uts and cgroup
 * namespaces under bubblewrap, with read-only system directories, a private workspace and
 * /tmp, an explicit environment, and memory/process limits from a cgroup of its own.
 *
 * When the server runs as root, the launcher drops to an unprivileged host uid from a pool
 * before bwrap runs: bwrap started by host root would keep root's power over host files
 * (a user namespace owned by root still reads /etc/shadow).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
} from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { RuncellError } from '../errors.ts';
import { detectCgroups, type Cgroup, type Cgroups } from './cgroups.ts';
import type { Sandbox, SandboxExit, SandboxLimits, SandboxProcess, SandboxSpec } from './sandbox.ts';
import { seccompFilter } from './seccomp.ts';
import { UidPool } from './uid-pool.ts';
import { MountHelper } from './mount-helper.ts';
import { WorkspaceVolumes } from './workspace-volume.ts';
import { prepareWorkspace } from './workspace.ts';

const BWRAP = '/usr/bin/bwrap';
const SETPRIV = '/usr/bin/setpriv';
/** Inside the sandbox every kernel is uid/gid 1000, whatever host uid backs it. */
const INNER_ID = '1000';
/** The workspace is handed to bwrap as this fd, opened with O_NOFOLLOW, so what gets bound is
 * the directory we prepared even if its path is swapped for a symlink in between. (bwrap still
 * resolves the fd's path as the pool uid: see resolveWorkspaceRoot.) */
const WORKSPACE_FD = 5;
/** bwrap reads the seccomp program from this fd to EOF, and closes it before the command runs. */
const SECCOMP_FD = 6;

/** Host paths visible read-only inside, when they exist. */
const SYSTEM_PATHS = [
  '/usr',
  '/etc/alternatives',
  '/etc/ld.so.cache',
  '/etc/localtime',
  '/etc/ssl/certs',
  // Fonts and Debian's matplotlib settings, so figures render (font caches go to /tmp).
  '/etc/fonts',
  '/etc/matplotlibrc',
];
/** Merged-/usr symlinks to recreate. */
const USR_LINKS = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/** The owner (uid) and workspace a live tree holds. */
interface Binding {
  owner: string;
  workspace: string | undefined;
  /** The workspace, when it is a volume this tree attached. */
  volume: string | undefined;
}

export interface BwrapSandboxOptions {
  uidBase: number;
  uidCount: number;
  /** Names this server's cgroups (see detectCgroups). */
  instance: string;
  log: FastifyBaseLogger;
}

export class BwrapSandbox implements Sandbox {
  readonly name = 'bwrap' as const;
  readonly isolated = true;
  readonly #log: FastifyBaseLogger;
  readonly #asRoot = process.getuid?.() === 0;
  readonly #uids: UidPool;
  readonly #live = new Set<SandboxProcess>();
  #cgroups: Cgroups | undefined;
  readonly #seccomp = seccompFilter();
  readonly #instance: string;
  readonly #mounts: MountHelper;
  readonly #volumes: WorkspaceVolumes;
  readonly #bindings = new Map<SandboxProcess, Binding>();
  #closed: Promise<void> | undefined;

  constructor(options: BwrapSandboxOptions) {
    this.#log = options.log;
    this.#mounts = new MountHelper();
    this.#volumes = new WorkspaceVolumes(this.#mounts);
    this.#uids = new UidPool(options.uidBase, options.uidCount);
    this.#instance = options.instance;
  }

  async init(): Promise<void> {
    const closed = closeInheritedFds();
    if (closed.length > 0) this.#log.warn({ closed }, 'closed descriptors inherited from the parent process');
    if (!existsSync(BWRAP)) {
      throw new RuncellError(
        'SANDBOX_UNAVAILABLE',
        `${BWRAP} is missing: install bubblewrap (apt-get install bubblewrap)`,
      );
    }
    if (this.#asRoot && !existsSync(SETPRIV)) {
      throw new RuncellError('SANDBOX_UNAVAILABLE', `${SETPRIV} is missing (util-linux)`);
    }
    const cgroups = detectCgroups(this.#instance);
    if (typeof cgroups === 'string') {
      this.#log.warn(`no cgroups (${cgroups}): kernel memory and process limits are NOT enforced`);
    } else {
      this.#cgroups = cgroups;
      const swept = await cgroups.sweep();
      if (swept > 0) this.#log.warn({ swept }, 'killed sandboxes left by a previous run');
    }
    // A real start proves namespaces work here (a container may forbid user namespaces).
    const probe = await this.spawn({
      owner: 'runcell-probe',
      argv: ['/usr/bin/true'],
      env: {},
      limits: {
        memoryBytes: 64 << 20,
        maxProcesses: 8,
        tmpBytes: 1 << 20,
        cpus: 1,
        openFiles: 64,
        fileBytes: 1 << 20,
      },
      network: false,
    });
    let stderr = '';
    probe.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = await probe.exited;
    if (exit.code !== 0) {
      throw new RuncellError(
        'SANDBOX_UNAVAILABLE',
        `bwrap cannot start a sandbox here: ${stderr.trim() || exit.signal}`,
      );
    }
  }

  async spawn(spec: SandboxSpec): Promise<SandboxProcess> {
    if (this.#closed) throw new RuncellError('SHUTTING_DOWN');
    const uid = this.#asRoot ? this.#uids.acquire(spec.owner) : process.getuid!();
    if (uid === undefined) throw new RuncellError('SANDBOX_UNAVAILABLE', 'no free sandbox uid');
    let cgroup: Cgroup | undefined;
    let workspaceFd: number | undefined;
    // Only root can mount: otherwise the workspace is a plain directory, without a quota.
    const volume =
      this.#asRoot && spec.workspace !== undefined && spec.workspaceQuota ? spec.workspace : undefined;
    let attached = false;
    // What the tree holds; transfer() changes it for a pooled kernel.
    const binding: Binding = { owner: spec.owner, workspace: spec.workspace, volume };
    const release = async () => {
      if (attached) await this.#volumes.detach(binding.volume!);
      if (this.#asRoot) this.#uids.release(binding.owner);
    };
    try {
      if (spec.workspace !== undefined) {
        mkdirSync(spec.workspace, { recursive: true, mode: 0o700 });
        if (volume) {
          await this.#volumes.attach(volume, spec.workspaceQuota!);
          attached = true;
        }
        await prepareWorkspace(spec.workspace, this.#asRoot ? uid : undefined);
        workspaceFd = openSync(
          spec.workspace,
          constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW,
        );
      }
      cgroup = this.#cgroups?.create(`k-${uid}-${randomUUID().slice(0, 8)}`, spec.limits);
      const argv = [
        ...this.#launcher(uid, cgroup, spec.limits),
        BWRAP,
        ...this.#bwrapArgs(spec, workspaceFd !== undefined),
        '--',
        ...spec.argv,
      ];
      const child = spawn(argv[0]!, argv.slice(1), {
        // The launcher gets an empty environment: bwrap's own pid 1 keeps it, readable at
        // /proc/1/environ from inside. The command's environment is set by --setenv only.
        env: {},
        cwd: '/',
        stdio: [
          spec.stdin ? 'pipe' : 'ignore',
          'pipe',
          'pipe',
          'pipe',
          'pipe',
          workspaceFd ?? 'ignore',
          'pipe',
        ],
      });
      writeStdin(child, spec.stdin);
      // About 1 KiB: fits the pipe buffer, so this never blocks; EPIPE if bwrap died first.
      (child.stdio as unknown as Writable[])[SECCOMP_FD]!.on('error', () => {}).end(this.#seccomp);
      const proc = new BwrapProcess(child, cgroup, async () => {
        this.#live.delete(proc);
        this.#bindings.delete(proc);
        await release();
      });
      this.#live.add(proc);
      this.#bindings.set(proc, binding);
      return proc;
    } catch (err) {
      await cgroup?.destroy().catch(() => {});
      await release();
      throw err;
    } finally {
      if (workspaceFd !== undefined) closeSync(workspaceFd);
    }
  }

  /**
   * One sh joins the cgroup and sets the rlimits before it execs anything, so not one
   * instruction of the tree runs outside them, and the sandbox (after the uid drop) cannot raise
   * them again. No core dumps: they would land in the workspace and could hold memory of another
   * process. sh runs with an empty environment and unsets the PWD it exports, so bwrap's pid 1 inherits none.
   */
  #launcher(uid: number, cgroup: Cgroup | undefined, limits: SandboxLimits): string[] {
    const join = cgroup
      ? 'for f in ' + cgroup.procsFiles.join(' ') + '; do echo $$ > "$f" || exit 125; done; '
      : '';
    const fileBlocks = Math.max(1, Math.floor(limits.fileBytes / 512)); // ulimit -f counts 512-byte blocks
    const rlimits = `ulimit -n ${limits.openFiles} && ulimit -f ${fileBlocks} && ulimit -c 0 || exit 125; `;
    const argv = ['/bin/sh', '-c', `${join}${rlimits}unset PWD OLDPWD; exec "$@"`, 'runcell-launcher'];
    if (this.#asRoot) {
      argv.push(
        SETPRIV,
        `--reuid=${uid}`,
        `--regid=${uid}`,
        '--clear-groups',
        '--inh-caps=-all',
        '--bounding-set=-all',
        '--no-new-privs',
      );
    }
    return argv;
  }

  #bwrapArgs(spec: SandboxSpec, withWorkspace: boolean): string[] {
    const args = [
      '--unshare-all',
      '--unshare-user',
      '--disable-userns',
      '--die-with-parent',
      '--new-session',
    ];
    if (spec.network) args.push('--share-net');
    args.push('--seccomp', String(SECCOMP_FD));
    args.push('--uid', INNER_ID, '--gid', INNER_ID, '--hostname', 'runcell', '--cap-drop', 'ALL');
    for (const path of SYSTEM_PATHS) if (existsSync(path)) args.push('--ro-bind', path, path);
    for (const link of USR_LINKS) {
      if (!existsSync(link)) continue;
      const stat = lstatSync(link);
      if (stat.isSymbolicLink()) args.push('--symlink', `usr${link}`, link);
      else args.push('--ro-bind', link, link);
    }
    args.push('--proc', '/proc', '--dev', '/dev');
    const tmp = String(spec.limits.tmpBytes);
    args.push('--size', tmp, '--perms', '1777', '--tmpfs', '/tmp');
    args.push('--size', tmp, '--perms', '1777', '--tmpfs', '/dev/shm');
    // After the tmpfs mounts, which would hide a bind below them.
    for (const path of spec.readOnlyBinds ?? []) args.push('--ro-bind', path, path);
    if (withWorkspace) args.push('--bind-fd', String(WORKSPACE_FD), '/workspace', '--chdir', '/workspace');
    // The root and /dev are tmpfs of bwrap's own: read-only (device nodes still work), so
    // nothing but /workspace, /tmp and /dev/shm takes writes, each with its own limit.
    args.push('--remount-ro', '/dev', '--remount-ro', '/');
    args.push('--clearenv');
    for (const [key, value] of Object.entries(spec.env)) args.push('--setenv', key, value);
    return args;
  }

  async transfer(proc: SandboxProcess, to: { owner: string; workspace: string }): Promise<void> {
    const binding = this.#bindings.get(proc);
    if (!binding?.workspace) throw new Error('not a live sandbox with a workspace');
    if (existsSync(to.workspace)) throw new Error(`${to.workspace} exists`);
    if (this.#asRoot && !this.#uids.rename(binding.owner, to.owner)) {
      throw new Error(`${to.owner} already holds a uid`);
    }
    binding.owner = to.owner;
    if (binding.volume) {
      await this.#volumes.move(binding.volume, to.workspace);
      binding.volume = to.workspace;
    } else {
      // The sandbox bound the directory itself, not its path: it keeps it under the new name.
      renameSync(binding.workspace, to.workspace);
    }
    binding.workspace = to.workspace;
  }

  close(): Promise<void> {
    return (this.#closed ??= (async () => {
      await Promise.all([...this.#live].map((p) => p.kill()));
      await this.#volumes.close();
      this.#mounts.close();
    })());
  }
}

/**
 * bwrap hands every descriptor it inherits to the sandbox, and a child inherits every descriptor
 * of ours not marked close-on-exec. Node marks all it opens, so any that is not came from whoever
 * started the server (a shell, a supervisor): a cell could read or write it. Close those.
 */
/** Linux's O_CLOEXEC as fdinfo shows it (Node does not export it). */
const O_CLOEXEC = 0o2000000;

export function closeInheritedFds(): string[] {
  const closed: string[] = [];
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd <= 2) continue;
    try {
      const flags = Number.parseInt(
        /^flags:\s+([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!,
        8,
      );
      if (flags & O_CLOEXEC) continue;
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      closeSync(fd);
      closed.push(`${fd} (${target})`);
    } catch {
      // gone meanwhile (the directory listing's own descriptor)
    }
  }
  return closed;
}

/** Hands the command its stdin; EPIPE (the command died, or closed fd 0) is not ours to report. */
export function writeStdin(child: ChildProcess, data: Buffer | undefined): void {
  if (data) child.stdin!.on('error', () => {}).end(data);
}

class BwrapProcess implements SandboxProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly requests: Writable;
  readonly events: Readable;
  readonly exited: Promise<SandboxExit>;
  readonly #child: ChildProcess;
  readonly #cgroup: Cgroup | undefined;
  #killed = false;
  /** The cgroup's accounting, read just before it is removed. */
  #final: { cpuMs?: number; peakBytes?: number; pidsLimitHit: boolean } | undefined;

  constructor(child: ChildProcess, cgroup: Cgroup | undefined, release: () => Promise<void>) {
    this.#child = child;
    this.#cgroup = cgroup;
    this.stdout = child.stdio[1] as Readable;
    this.stderr = child.stdio[2] as Readable;
    this.requests = child.stdio[3] as Writable;
    this.events = child.stdio[4] as Readable;
    // A write to a dead kernel must not crash the server; the exit is reported instead.
    this.requests.on('error', () => {});
    this.exited = new Promise<SandboxExit>((resolve) => {
      const finish = async (code: number | null, signal: NodeJS.Signals | null) => {
        const oom = cgroup?.oomKilled() ?? false;
        if (cgroup) {
          this.#final = {
            cpuMs: cgroup.cpuTimeMs(),
            peakBytes: cgroup.peakMemoryBytes(),
            pidsLimitHit: cgroup.pidsLimitHit(),
          };
        }
        // The tree is gone only when the cgroup is empty: that is when the uid may be reused.
        await cgroup?.destroy().catch(() => {});
        await release().catch(() => {});
        resolve({ code, signal, reason: oom ? 'memory' : this.#killed ? 'killed' : 'exited' });
      };
      child.once('error', () => void finish(null, null));
      child.once('exit', (code, signal) => void finish(code, signal));
    });
  }

  cpuTimeMs(): number | undefined {
    return this.#final ? this.#final.cpuMs : this.#cgroup?.cpuTimeMs();
  }

  peakMemoryBytes(): number | undefined {
    return this.#final ? this.#final.peakBytes : this.#cgroup?.peakMemoryBytes();
  }

  pidsLimitHit(): boolean {
    return this.#final ? this.#final.pidsLimitHit : (this.#cgroup?.pidsLimitHit() ?? false);
  }

  kill(): Promise<SandboxExit> {
    if (!this.#killed) {
      this.#killed = true;
      void this.#cgroup?.killAll().catch(() => {});
      this.#child.kill('SIGKILL');
    }
    return this.exited;
  }
}
