/**
 * Kernel: one long-lived interpreter in a sandbox, owned by one notebook and one language.
 * It runs one cell at a time over the framed protocol (protocol.ts), enforces the cell's wall
 * clock (interrupt, then kill after a grace period) and reports its own death.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Language } from '../engine/languages.ts';
import type { Sandbox, SandboxExit, SandboxLimits, SandboxProcess } from '../sandbox/sandbox.ts';
import { KERNEL_ENV, type KernelDriver } from './kernel-driver.ts';
import { OutputBuffer, type OutputListener } from './output-buffer.ts';
import {
  encodeFrame,
  FrameDecoder,
  isKernelEvent,
  type KernelEvent,
  type KernelRequest,
} from './protocol.ts';

export type KernelState = 'starting' | 'idle' | 'busy' | 'dead';

export type ExecOutcome =
  | { status: 'ok'; value: string | null; data?: Record<string, unknown>; metadata?: Record<string, unknown> }
  | { status: 'error'; ename: string; evalue: string; traceback: string[]; interrupted: boolean }
  /** The kernel died during the cell; `why` says how, for people. */
  | { status: 'dead'; why: string; exit: SandboxExit };

export interface ExecResult {
  outcome: ExecOutcome;
  output: OutputBuffer;
  /** The limit the cell ran into (it was then interrupted, or killed): wall clock or CPU time. */
  limit?: 'timeout' | 'cpu-time';
  /** CPU time of the kernel's whole process tree during the cell, when the sandbox accounts it. */
  cpuMs?: number;
  durationMs: number;
}

export interface ExecOptions {
  timeoutMs: number;
  /** CPU time the cell may use (all its processes and threads); 0 for no limit. */
  cpuTimeMs: number;
  /** Cores the kernel may use, to pace CPU time checks. */
  cpuCores: number;
  /** How long an interrupted cell may take to stop before the kernel is killed. */
  graceMs: number;
  maxOutputBytes: number;
  /** Sees the cell's output (stream chunks, displays) as it arrives. */
  onOutput?: OutputListener;
  /** Answers the cell's input() calls: a line, or null for "no input available". */
  onInput?: (prompt: string, password: boolean) => Promise<string | null>;
}

export interface KernelOptions {
  notebookId: string;
  workspace: string;
  workspaceQuota?: { bytes: number; inodes: number };
  limits: SandboxLimits;
  network: boolean;
  log: FastifyBaseLogger;
  startTimeoutMs?: number;
  /** Sees every protocol message, both ways (the debug feed). */
  onMessage?: (direction: 'in' | 'out', message: KernelRequest | KernelEvent) => void;
}

/** A notebook's processes (kernels, file operations) share its workspace: one sandbox owner, one uid. */
export const ownerOf = (notebookId: string) => `notebook:${notebookId}`;

const DIAGNOSTIC_TAIL_BYTES = 4096;
const CHANNEL_CLOSED_GRACE_MS = 250;
const NO_INPUT =
  'input() needs an interactive client: run the cell over the notebook WebSocket and answer input.requested';

interface RunningCell {
  id: number;
  output: OutputBuffer;
  onInput: ExecOptions['onInput'];
  resolve: (outcome: ExecOutcome) => void;
}

export class Kernel {
  readonly id = randomUUID();
  #notebookId: string;
  readonly language: Language;
  lastActivity = Date.now();
  #state: KernelState = 'starting';
  readonly #proc: SandboxProcess;
  readonly #driver: KernelDriver;
  readonly #onMessage: KernelOptions['onMessage'];
  #log: FastifyBaseLogger;
  readonly #baseLog: FastifyBaseLogger;
  readonly #limits: SandboxLimits;
  readonly #decoder = new FrameDecoder();
  #nextId = 0;
  #running: RunningCell | undefined;
  #diagnostics = '';
  #deathReason: string | undefined;
  #ready!: { resolve: () => void; reject: (err: Error) => void };

  private constructor(proc: SandboxProcess, driver: KernelDriver, options: KernelOptions) {
    this.#notebookId = options.notebookId;
    this.language = driver.language;
    this.#limits = options.limits;
    this.#baseLog = options.log;
    this.#log = this.#childLog();
    this.#proc = proc;
    this.#driver = driver;
    this.#onMessage = options.onMessage;
    this.#proc.events.on('data', (chunk: Buffer) => this.#onEventData(chunk));
    // Without its event channel a kernel can never report again: unless it is exiting anyway
    // (then its exit status is the better reason), replace it.
    this.#proc.events.on('end', () => {
      setTimeout(() => {
        if (this.#state !== 'dead') void this.kill('the kernel closed its protocol channel');
      }, CHANNEL_CLOSED_GRACE_MS).unref();
    });
    this.#proc.stdout.on('data', (chunk: Buffer) => this.#onRawOutput('stdout', chunk));
    this.#proc.stderr.on('data', (chunk: Buffer) => this.#onRawOutput('stderr', chunk));
    void this.#proc.exited.then((exit) => this.#onExit(exit));
  }

  get notebookId(): string {
    return this.#notebookId;
  }

  #childLog(): FastifyBaseLogger {
    return this.#baseLog.child({ kernelId: this.id, notebookId: this.#notebookId, language: this.language });
  }

  /**
   * Hands a pooled kernel, started for no notebook and never used, to a new notebook: the
   * sandbox's uid and workspace become the notebook's (see Sandbox.transfer).
   */
  async assign(sandbox: Sandbox, notebookId: string, workspace: string): Promise<void> {
    if (this.#state !== 'idle' || this.#nextId !== 0) throw new Error('only an unused idle kernel moves');
    await sandbox.transfer(this.#proc, { owner: ownerOf(notebookId), workspace });
    this.#notebookId = notebookId;
    this.#log = this.#childLog();
    this.lastActivity = Date.now();
  }

  /** Starts a kernel and resolves once it can run cells. */
  static async start(sandbox: Sandbox, driver: KernelDriver, options: KernelOptions): Promise<Kernel> {
    await driver.prepare?.();
    const proc = await sandbox.spawn({
      owner: ownerOf(options.notebookId),
      argv: driver.argv({ memoryBytes: options.limits.memoryBytes }),
      stdin: driver.stdin?.(),
      readOnlyBinds: driver.readOnlyBinds,
      workspace: options.workspace,
      workspaceQuota: options.workspaceQuota,
      env: { ...KERNEL_ENV },
      limits: options.limits,
      network: options.network,
    });
    const kernel = new Kernel(proc, driver, options);
    const started = Date.now();
    const ready = new Promise<void>((resolve, reject) => (kernel.#ready = { resolve, reject }));
    const timer = setTimeout(() => {
      void kernel.kill('the kernel did not start in time');
    }, options.startTimeoutMs ?? 15_000);
    try {
      await ready;
    } finally {
      clearTimeout(timer);
    }
    kernel.#log.debug({ ms: Date.now() - started }, 'kernel started');
    return kernel;
  }

  get state(): KernelState {
    return this.#state;
  }

  get exited(): Promise<SandboxExit> {
    return this.#proc.exited;
  }

  /** Runs one cell. Never rejects: a dead kernel is an outcome. */
  async execute(code: string, options: ExecOptions): Promise<ExecResult> {
    const output = new OutputBuffer(options.maxOutputBytes, options.onOutput);
    const started = performance.now();
    // Transform first: the kernel may die (or be evicted) while this awaits, and the state
    // check below must see that, or the cell would wait for a kernel that is gone.
    if (this.#driver.transform) {
      const prepared = await this.#driver.transform(code);
      if ('error' in prepared) {
        const outcome: ExecOutcome = { status: 'error', ...prepared.error, interrupted: false };
        return { outcome, output, durationMs: performance.now() - started };
      }
      code = prepared.code;
    }
    if (this.#state !== 'idle') {
      const exit = await this.#proc.exited;
      return { outcome: this.#deadOutcome(exit), output, durationMs: 0 };
    }
    const id = ++this.#nextId;
    this.#state = 'busy';
    this.lastActivity = Date.now();
    let limit: ExecResult['limit'];
    let graceTimer: NodeJS.Timeout | undefined;
    let cpuTimer: NodeJS.Timeout | undefined;
    const outcome = new Promise<ExecOutcome>(
      (resolve) => (this.#running = { id, output, resolve, onInput: options.onInput }),
    );
    const stop = (why: 'timeout' | 'cpu-time') => {
      if (limit) return;
      limit = why;
      this.#send({ type: 'interrupt', id });
      graceTimer = setTimeout(() => {
        void this.kill(`the cell did not stop within ${options.graceMs} ms of being interrupted`);
      }, options.graceMs);
    };
    // The wall clock is the server's: a cell that stops itself (SIGSTOP) cannot escape it.
    const wallTimer = setTimeout(() => stop('timeout'), options.timeoutMs);
    // CPU time is read from the cgroup (the whole tree) only when it could have run out: the
    // next check is as far away as the remaining CPU time takes on every allowed core.
    const cpuBase = this.#proc.cpuTimeMs();
    if (options.cpuTimeMs > 0 && cpuBase !== undefined) {
      const check = (): void => {
        const used = (this.#proc.cpuTimeMs() ?? cpuBase) - cpuBase;
        if (used >= options.cpuTimeMs) return stop('cpu-time');
        cpuTimer = setTimeout(check, Math.max(10, (options.cpuTimeMs - used) / options.cpuCores));
      };
      cpuTimer = setTimeout(check, options.cpuTimeMs / options.cpuCores);
    }
    this.#send({ type: 'execute', id, code, maxOutputBytes: options.maxOutputBytes });
    const result = await outcome;
    clearTimeout(wallTimer);
    clearTimeout(cpuTimer);
    clearTimeout(graceTimer);
    const cpuEnd = this.#proc.cpuTimeMs();
    const cpuMs = cpuBase !== undefined && cpuEnd !== undefined ? cpuEnd - cpuBase : undefined;
    this.lastActivity = Date.now();
    return { outcome: result, output, limit, cpuMs, durationMs: performance.now() - started };
  }

  /** Asks the running cell to stop (KeyboardInterrupt, terminateExecution). */
  interrupt(): void {
    if (this.#running) this.#send({ type: 'interrupt', id: this.#running.id });
  }

  /** Kills the whole process tree; resolves when it is gone. Idempotent. */
  async kill(reason = 'the kernel was stopped'): Promise<void> {
    this.#deathReason ??= reason;
    await this.#proc.kill();
  }

  #send(request: KernelRequest): void {
    if (this.#state === 'dead') return;
    this.#onMessage?.('in', request);
    this.#proc.requests.write(encodeFrame(request));
  }

  #onEventData(chunk: Buffer): void {
    let events: unknown[];
    try {
      events = this.#decoder.push(chunk);
    } catch (err) {
      // A broken channel can only come from the kernel's own process (user code can write to
      // it). It is that notebook's problem: kill its kernel, report, carry on.
      void this.kill(`the kernel broke its protocol channel (${(err as Error).message})`);
      return;
    }
    for (const event of events) {
      if (!isKernelEvent(event)) {
        void this.kill('the kernel sent a malformed message on its protocol channel');
        return;
      }
      this.#onEvent(event);
    }
  }

  #onEvent(event: KernelEvent): void {
    this.#onMessage?.('out', event);
    switch (event.type) {
      case 'ready':
        if (this.#state === 'starting') {
          this.#state = 'idle';
          this.#ready.resolve();
        }
        return;
      case 'stream':
        if (this.#running?.id === event.id) {
          this.#running.output.append(event.name === 'stderr' ? 'stderr' : 'stdout', event.text);
        }
        return;
      case 'display':
        if (this.#running?.id === event.id) this.#running.output.display(event.data, event.metadata ?? {});
        return;
      case 'input_request': {
        const running = this.#running;
        if (running?.id !== event.id) return;
        const answer = running.onInput?.(event.prompt, event.password) ?? Promise.resolve(null);
        void answer.then(
          (value) => {
            // Only the same cell, still waiting, gets the line (it may have been interrupted).
            if (this.#running !== running) return;
            this.#send(
              value === null
                ? { type: 'input_reply', id: event.id, value: null, error: NO_INPUT }
                : { type: 'input_reply', id: event.id, value },
            );
          },
          () => this.#send({ type: 'input_reply', id: event.id, value: null, error: NO_INPUT }),
        );
        return;
      }
      case 'result': {
        const running = this.#running;
        if (running?.id !== event.id) return;
        this.#running = undefined;
        this.#state = 'idle';
        if (event.dropped) running.output.addDropped(event.dropped);
        running.resolve(
          event.status === 'ok'
            ? { status: 'ok', value: event.value, data: event.data, metadata: event.metadata }
            : {
                status: 'error',
                ename: event.ename,
                evalue: event.evalue,
                traceback: event.traceback,
                interrupted: event.interrupted === true,
              },
        );
        return;
      }
    }
  }

  /** fd 1/2 of the kernel: output of processes the cell started, or the driver's last words. */
  #onRawOutput(name: 'stdout' | 'stderr', chunk: Buffer): void {
    if (this.#running) {
      this.#running.output.append(name, chunk.toString('utf8'));
    } else {
      this.#diagnostics = (this.#diagnostics + chunk.toString('utf8')).slice(-DIAGNOSTIC_TAIL_BYTES);
    }
  }

  #deadOutcome(exit: SandboxExit): ExecOutcome {
    return { status: 'dead', why: this.#describeDeath(exit), exit };
  }

  #describeDeath(exit: SandboxExit): string {
    if (exit.reason === 'memory') {
      return `the kernel ran out of memory (limit ${Math.round(this.#limits.memoryBytes / 1048576)} MiB)`;
    }
    if (exit.reason === 'killed' && this.#deathReason) return this.#deathReason;
    if (exit.signal) return `the kernel was killed by ${exit.signal}`;
    return `the kernel exited with code ${exit.code}`;
  }

  #onExit(exit: SandboxExit): void {
    const wasStarting = this.#state === 'starting';
    this.#state = 'dead';
    const why = this.#describeDeath(exit);
    this.#log.info({ exit, why }, 'kernel ended');
    if (wasStarting) {
      const detail = this.#diagnostics.trim();
      this.#ready.reject(new Error(`kernel failed to start: ${why}${detail ? `: ${detail}` : ''}`));
    }
    const running = this.#running;
    this.#running = undefined;
    running?.resolve({ status: 'dead', why, exit });
  }
}
