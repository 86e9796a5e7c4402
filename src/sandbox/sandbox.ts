/**
 * Sandbox: start a process under isolation and limits, kill it and everything it spawned.
 * Implementations: BwrapSandbox (default) and NoneSandbox (development only).
 */
import type { Readable, Writable } from 'node:stream';

export interface SandboxLimits {
  /** Memory for the whole process tree (memory cgroup). */
  memoryBytes: number;
  /** Processes and threads for the whole tree (pids cgroup). */
  maxProcesses: number;
  /** Size of the private /tmp and /dev/shm. */
  tmpBytes: number;
  /** CPU cores the tree may use at most (cpu cgroup quota); 0 for no cap. */
  cpus: number;
  /** Open files per process (RLIMIT_NOFILE). */
  openFiles: number;
  /** Largest file a process may write (RLIMIT_FSIZE). */
  fileBytes: number;
}

export interface SandboxSpec {
  /** Command and arguments, as seen inside the sandbox. */
  argv: string[];
  /**
   * Processes with the same owner (a notebook's kernels, which share its workspace) run as the
   * same host uid; different owners never do.
   */
  owner: string;
  /** Host directory bound read-write at /workspace, the working directory (else `/`). */
  workspace?: string;
  /** Bytes and inodes of the workspace (its own filesystem); none when absent. */
  workspaceQuota?: { bytes: number; inodes: number };
  /**
   * Host paths (files or directories) also visible inside, read-only, at the same path: what a
   * kernel needs beyond /usr (compiled drivers, a Jupyter kernelspec's files). Never a workspace.
   */
  readOnlyBinds?: readonly string[];
  /** Written to the command's fd 0, which then reaches end of file; /dev/null when absent. */
  stdin?: Buffer;
  /** The complete environment of the command; nothing of the server's leaks in. */
  env: Record<string, string>;
  limits: SandboxLimits;
  /** Give the process network access (a loopback-only network namespace otherwise). */
  network: boolean;
}

export type ExitReason = 'memory' | 'killed' | 'exited';

export interface SandboxExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** `memory` when the memory limit killed it, `killed` when kill() ended it. */
  reason: ExitReason;
}

export interface SandboxProcess {
  /** fd 1 and 2 of the command. */
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** fd 3 (written by the server) and fd 4 (read by the server) of the command. */
  readonly requests: Writable;
  readonly events: Readable;
  /** Resolves once the whole tree is gone and its resources (uid, cgroup) are released. */
  readonly exited: Promise<SandboxExit>;
  /**
   * CPU time of the whole tree so far, or undefined where it is not accounted. This and the two
   * below keep their last values once the tree has exited.
   */
  cpuTimeMs(): number | undefined;
  /** The most memory the tree held at once, or undefined where it is not accounted. */
  peakMemoryBytes(): number | undefined;
  /** True once a fork or clone of the tree failed because of `maxProcesses`. */
  pidsLimitHit(): boolean;
  /** Kills every process of the tree; resolves as `exited` does. Idempotent. */
  kill(): Promise<SandboxExit>;
}

export interface Sandbox {
  readonly name: 'bwrap' | 'none';
  /** False for `none`: the server then refuses to listen beyond loopback. */
  readonly isolated: boolean;
  /** Checks the backend can start processes here; throws SANDBOX_UNAVAILABLE with the reason. */
  init(): Promise<void>;
  spawn(spec: SandboxSpec): Promise<SandboxProcess>;
  /**
   * Hands a live tree (a pooled kernel) to another owner, and moves its workspace to a path that
   * does not exist yet; the tree keeps running in it. Throws when the owner already holds a uid.
   */
  transfer(proc: SandboxProcess, to: { owner: string; workspace: string }): Promise<void>;
  /** Kills every process still running. Idempotent. */
  close(): Promise<void>;
}
