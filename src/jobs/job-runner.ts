/**
 * JobRunner: runs one job's plan, each step (compile, then run) in a fresh sandbox of its own
 * limits, in the job's private workspace, which is removed afterwards whatever happened.
 *
 * Limits, all on the whole process tree and each reported as the job's `reason`: wall clock
 * (`timeout`; a SIGSTOPped tree still ends there), CPU time from the cgroup (`cpu-time`, checked
 * every MONITOR_MS), memory (the cgroup's OOM kill: `memory`), processes (`pids`: a refused fork
 * ends the job at once, so a fork bomb stops instead of spinning until its wall limit), and
 * output (`output-limit`: stdout or stderr past its cap ends the job, the kept part is marked
 * truncated). Ending means SandboxProcess.kill: every process of the cgroup, daemons included.
 */
import { Buffer } from 'node:buffer';
import { lstatSync } from 'node:fs';
import { chown, mkdir, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Sandbox, SandboxProcess } from '../sandbox/sandbox.ts';
import type { JobReason, JobStep } from '../store/store.ts';
import type { JobFile, JobPlan, JobStepPlan } from './job-plan.ts';
import type { JobWorkspaces } from './job-workspaces.ts';

const MONITOR_MS = 50;
/** A sandbox takes well under a second to set up; one that does not is killed. */
const SETUP_TIMEOUT_MS = 30_000;
/**
 * Inside the sandbox, once it is set up, the command says so on fd 4 and waits for a line on
 * fd 3 before it execs the program: the server writes the job's files into the workspace
 * spawn() prepared (so they need no chown -R), and the wall clock and CPU time count from there,
 * not from the sandbox's setup. fd 3 and 4 (the kernel protocol's) are then closed.
 */
const GATE = ['/bin/sh', '-c', 'echo >&4 && read -r _ <&3 && exec "$@" 3<&- 4>&-', 'runcell-job'];
const SIGNALS = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name]));

export interface JobSandboxSettings {
  /** Cores per step (cpu cgroup quota). */
  cpus: number;
  tmpBytes: number;
  openFiles: number;
  fileBytes: number;
  network: boolean;
}

export interface JobOutcome {
  compile: JobStep | null;
  run: JobStep | null;
  reason: JobReason | null;
  message: string | null;
}

/** One stream's kept bytes, up to its cap. */
class CappedOutput {
  readonly #cap: number;
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  truncated = false;

  constructor(cap: number) {
    this.#cap = cap;
  }

  /** False once the stream passed its cap. */
  push(chunk: Buffer): boolean {
    const room = this.#cap - this.#bytes;
    if (chunk.length > room) {
      this.truncated = true;
      if (room > 0) this.#chunks.push(chunk.subarray(0, room));
      this.#bytes = this.#cap;
      return false;
    }
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    return true;
  }

  text(): string {
    return Buffer.concat(this.#chunks).toString('utf8');
  }
}

/** True once the gate says the sandbox is up; false if it ended first. */
function ready(events: Readable): Promise<boolean> {
  return new Promise((resolve) => {
    events.once('data', () => resolve(true));
    events.once('close', () => resolve(false));
    events.once('end', () => resolve(false));
    events.resume();
  });
}

function ended(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || stream.readableEnded) return resolve();
    stream.once('close', resolve);
    stream.once('end', resolve);
  });
}

const mib = (bytes: number) => `${Math.round(bytes / 1048576)} MiB`;

function describe(reason: JobReason | null, what: string, step: JobStepPlan): string | null {
  const l = step.limits;
  switch (reason) {
    case 'timeout':
      return `${what} ran past its wall-clock limit of ${l.wallMs} ms`;
    case 'cpu-time':
      return `${what} used more than its ${l.cpuMs} ms of CPU time`;
    case 'memory':
      return `${what} ran out of memory (limit ${mib(l.memoryBytes)})`;
    case 'output-limit':
      return `${what} wrote more than ${l.outputBytes} bytes to stdout or stderr`;
    case 'pids':
      return `${what} reached its limit of ${l.processes} processes and threads`;
    case 'cancelled':
      return 'the job was cancelled';
    default:
      return null;
  }
}

/** Writes the files into the fresh workspace, owned like it (the sandbox uid spawn() gave it). */
async function writeFiles(dir: string, files: JobFile[]): Promise<void> {
  const { uid, gid } = lstatSync(dir);
  const own = uid !== process.getuid?.();
  const made = new Set<string>();
  for (const file of files) {
    const parts = file.name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const sub = join(dir, ...parts.slice(0, i));
      if (made.has(sub)) continue;
      await mkdir(sub, { mode: 0o700 });
      if (own) await chown(sub, uid, gid);
      made.add(sub);
    }
    const path = join(dir, file.name);
    // wx: the workspace is fresh, nothing is there; never write through what might be.
    await writeFile(path, file.content, { flag: 'wx', mode: 0o600 });
    if (own) await chown(path, uid, gid);
  }
}

export class JobRunner {
  readonly #sandbox: Sandbox;
  readonly #workspaces: JobWorkspaces;
  readonly #settings: JobSandboxSettings;

  constructor(sandbox: Sandbox, workspaces: JobWorkspaces, settings: JobSandboxSettings) {
    this.#sandbox = sandbox;
    this.#workspaces = workspaces;
    this.#settings = settings;
  }

  /** Runs the plan; `signal` cancels it (the tree is killed). Throws only if the sandbox fails. */
  async run(jobId: string, plan: JobPlan, signal: AbortSignal): Promise<JobOutcome> {
    if (plan.compileError !== undefined) {
      const compile: JobStep = { ...emptyStep(), stderr: plan.compileError, exitCode: 1 };
      return { compile, run: null, reason: 'compile-error', message: 'compilation failed' };
    }
    const dir = await this.#workspaces.create(jobId);
    try {
      let files = plan.files;
      let compile: JobStep | null = null;
      if (plan.compile) {
        compile = await this.#step(`job:${jobId}`, dir, plan.compile, files, plan.binds, signal);
        files = [];
        if (compile.reason !== null || compile.exitCode !== 0) {
          const message =
            describe(compile.reason, 'the compilation', plan.compile) ??
            `compilation failed (${compile.signal ?? `exit code ${compile.exitCode}`})`;
          return { compile, run: null, reason: compile.reason ?? 'compile-error', message };
        }
      }
      const run = await this.#step(`job:${jobId}`, dir, plan.run, files, plan.binds, signal);
      return { compile, run, reason: run.reason, message: describe(run.reason, 'the program', plan.run) };
    } finally {
      await this.#workspaces.remove(dir);
    }
  }

  async #step(
    owner: string,
    dir: string,
    step: JobStepPlan,
    files: JobFile[],
    binds: string[],
    signal: AbortSignal,
  ): Promise<JobStep> {
    const { cpus, tmpBytes, openFiles, fileBytes, network } = this.#settings;
    const proc: SandboxProcess = await this.#sandbox.spawn({
      owner,
      argv: [...GATE, ...step.argv],
      workspace: dir,
      readOnlyBinds: binds,
      env: step.env,
      stdin: step.stdin,
      limits: {
        memoryBytes: step.limits.memoryBytes,
        maxProcesses: step.limits.processes,
        tmpBytes,
        cpus,
        openFiles,
        fileBytes,
      },
      network,
    });
    let stopped: JobReason | undefined;
    const stop = (why: JobReason) => {
      stopped ??= why;
      void proc.kill();
    };
    const stdout = new CappedOutput(step.limits.outputBytes);
    const stderr = new CappedOutput(step.limits.outputBytes);
    proc.stdout.on('data', (chunk: Buffer) => stdout.push(chunk) || stop('output-limit'));
    proc.stderr.on('data', (chunk: Buffer) => stderr.push(chunk) || stop('output-limit'));
    // The program's end, for the wall time: its output closes when its last process is gone,
    // while `exited` also waits for the cgroup's removal.
    let endedAt: number | undefined;
    const drained = Promise.all([ended(proc.stdout), ended(proc.stderr)]).then(() => {
      endedAt ??= performance.now();
    });
    const onAbort = () => stop('cancelled');
    signal.addEventListener('abort', onAbort);
    if (signal.aborted) onAbort();
    const setup = setTimeout(() => void proc.kill(), SETUP_TIMEOUT_MS);
    const up = await ready(proc.events);
    clearTimeout(setup);
    if (!up && stopped === undefined) {
      const exit = await proc.exited;
      await drained;
      signal.removeEventListener('abort', onAbort);
      const why = stderr.text().trim() || exit.signal || `exit code ${exit.code}`;
      throw new Error(`the job's sandbox did not start: ${why}`);
    }
    try {
      await writeFiles(dir, files);
    } catch (err) {
      await proc.kill();
      signal.removeEventListener('abort', onAbort);
      throw new Error(`the job's files could not be written to its workspace: ${(err as Error).message}`, {
        cause: err,
      });
    }

    const cpuBase = proc.cpuTimeMs();
    const started = performance.now();
    proc.requests.end('\n');
    const wall = setTimeout(() => stop('timeout'), step.limits.wallMs);
    const monitor = setInterval(() => {
      const cpu = proc.cpuTimeMs();
      if (cpu !== undefined && cpuBase !== undefined && cpu - cpuBase >= step.limits.cpuMs) stop('cpu-time');
      else if (proc.pidsLimitHit()) stop('pids');
    }, MONITOR_MS);
    const exit = await proc.exited;
    endedAt ??= performance.now();
    clearTimeout(wall);
    clearInterval(monitor);
    signal.removeEventListener('abort', onAbort);
    await drained;
    const wallMs = Math.round(endedAt - started);

    const cpuEnd = proc.cpuTimeMs();
    // bwrap reports a program killed by signal N as exit status 128 + N.
    const signalName =
      exit.signal ??
      (exit.code !== null && exit.code > 128 ? SIGNALS.get(exit.code - 128) : undefined) ??
      null;
    const failed = exit.code !== 0;
    const reason =
      stopped ??
      (exit.reason === 'memory' ? 'memory' : undefined) ??
      (failed && proc.pidsLimitHit() ? 'pids' : null);
    return {
      stdout: stdout.text(),
      stderr: stderr.text(),
      stdoutTruncated: stdout.truncated,
      stderrTruncated: stderr.truncated,
      exitCode: exit.code,
      signal: signalName,
      cpuMs: cpuBase !== undefined && cpuEnd !== undefined ? Math.round(cpuEnd - cpuBase) : null,
      wallMs,
      peakMemoryBytes: proc.peakMemoryBytes() ?? null,
      reason,
    };
  }
}

export function emptyStep(): JobStep {
  return {
    stdout: '',
    stderr: '',
    stdoutTruncated: false,
    stderrTruncated: false,
    exitCode: null,
    signal: null,
    cpuMs: null,
    wallMs: 0,
    peakMemoryBytes: null,
    reason: null,
  };
}
