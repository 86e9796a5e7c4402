/**
 * KernelManager: the live kernels of this machine, one per (notebook, language). Starts them on
 * first use, remembers when a notebook lost its context (so the next result can say so), stops
 * the least recently used idle kernel when the machine is full, and kills them on reset.
 *
 * The warm pool: per language (config kernelPool), kernels started ahead for no notebook, each in
 * a sandbox of its own with a fresh uid and an empty workspace of its own. A new notebook (no
 * workspace, no live kernel) claims one: its uid and workspace become the notebook's. Pooled
 * kernels are not counted against maxKernels until claimed.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import { Kernel } from '../kernels/kernel.ts';
import type { KernelDriver } from '../kernels/kernel-driver.ts';
import type { Sandbox, SandboxLimits } from '../sandbox/sandbox.ts';
import { ensureWorkspaceRoot, poolRootOf } from '../sandbox/workspace.ts';
import { removeStale } from '../sandbox/workspace-volume.ts';
import type { Language } from './languages.ts';
import { isSafeId } from './ids.ts';

const REFILL_DELAY_MS = 200;

/** config.kernelPool (`python=2`, ...) as language → count. */
export function parsePool(entries: readonly string[]): Map<Language, number> {
  return new Map(
    entries.map((entry) => {
      const [language, count] = entry.split('=') as [string, string];
      return [language, Number(count)];
    }),
  );
}

export interface AcquiredKernel {
  kernel: Kernel;
  /** The notebook had a context in this language that is gone (kernel died or was stopped). */
  contextLost: boolean;
}

/** Where kernel.state (and, with debugFeed, kernel.message) events go: the notebook feed. */
export interface KernelEvents {
  publish(notebookId: string, event: { type: string; [field: string]: unknown }): void;
}

export class KernelManager {
  readonly #sandbox: Sandbox;
  readonly #drivers: Record<Language, KernelDriver>;
  readonly #config: Config;
  readonly #log: FastifyBaseLogger;
  readonly #kernels = new Map<string, Kernel>();
  readonly #starting = new Map<string, Promise<Kernel>>();
  /** Keys whose kernel went away other than by reset. */
  readonly #lost = new Set<string>();
  /** Kernels being stopped on purpose (reset, eviction, shutdown). */
  readonly #stopping = new Set<Kernel>();
  #closed = false;
  #cullTimer: NodeJS.Timeout | undefined;
  /** Pooled kernels ready to be claimed, and how many are being started, per language. */
  readonly #pool = new Map<Language, Kernel[]>();
  readonly #filling = new Map<Language, number>();
  readonly #poolSizes = new Map<Language, number>();

  readonly #events: KernelEvents | undefined;

  constructor(
    sandbox: Sandbox,
    drivers: Record<Language, KernelDriver>,
    config: Config,
    log: FastifyBaseLogger,
    events?: KernelEvents,
  ) {
    this.#events = events;
    this.#sandbox = sandbox;
    this.#drivers = drivers;
    this.#config = config;
    this.#log = log;
  }

  get liveCount(): number {
    return this.#kernels.size;
  }

  /** Whether a live kernel holds any context of this notebook. */
  isActive(notebookId: string): boolean {
    for (const kernel of this.#kernels.values()) if (kernel.notebookId === notebookId) return true;
    return false;
  }

  /** Kernels waiting in the pool. */
  get pooledCount(): number {
    let n = 0;
    for (const kernels of this.#pool.values()) n += kernels.length;
    return n;
  }

  /** Fills the warm pool (config kernelPool); what a previous run left in it is removed first. */
  async startPool(): Promise<void> {
    for (const [language, count] of parsePool(this.#config.kernelPool)) {
      if (!this.#drivers[language]) {
        this.#log.warn({ language }, 'kernelPool names a language this server does not offer');
        continue;
      }
      if (count > 0) this.#poolSizes.set(language, count);
    }
    if (this.#poolSizes.size === 0) return;
    // The server swept the volumes a previous run left mounted here (app.ts).
    const root = this.#poolRoot();
    removeStale(root);
    ensureWorkspaceRoot(root);
    for (const language of this.#poolSizes.keys()) this.#refill(language);
  }

  async acquire(notebookId: string, language: Language): Promise<AcquiredKernel> {
    if (this.#closed) throw new Error('the server is shutting down');
    const key = `${language}:${notebookId}`;
    const live = this.#kernels.get(key);
    if (live && live.state !== 'dead') return { kernel: live, contextLost: false };
    const kernel = await (this.#starting.get(key) ?? this.#start(key, notebookId, language));
    const contextLost = this.#lost.delete(key);
    return { kernel, contextLost };
  }

  /** Interrupts the notebook's busy kernels; false when none was busy. */
  interrupt(notebookId: string): boolean {
    let any = false;
    for (const kernel of this.#kernels.values()) {
      if (kernel.notebookId === notebookId && kernel.state === 'busy') {
        kernel.interrupt();
        any = true;
      }
    }
    return any;
  }

  /** Kills the notebook's kernels; its next cell starts a fresh context. */
  async reset(notebookId: string): Promise<void> {
    // A kernel still starting belongs to the old context too: wait for it, then stop it.
    const keys = new Set(Object.keys(this.#drivers).map((language) => `${language}:${notebookId}`));
    await Promise.allSettled([...this.#starting].filter(([key]) => keys.has(key)).map(([, p]) => p));
    const kernels = [...this.#kernels.values()].filter((k) => k.notebookId === notebookId);
    for (const key of keys) this.#lost.delete(key);
    await Promise.all(kernels.map((k) => this.#stop(k, 'the notebook was reset')));
  }

  /**
   * Starts culling: every cullIntervalSeconds, kernels idle (or, with cullBusy, busy) for
   * longer than their language's timeout are stopped, unless a client follows their notebook
   * (cullConnected to stop them anyway). Their notebooks lose their context, and
   * the next result and the feed say so.
   */
  startCulling(isConnected: (notebookId: string) => boolean = () => false): void {
    const config = this.#config;
    const overrides: Record<Language, number> = {
      python: config.cullIdleSecondsPython,
      javascript: config.cullIdleSecondsJavascript,
      typescript: config.cullIdleSecondsJavascript,
    };
    const timeoutOf = (language: Language) => overrides[language] || config.cullIdleSeconds;
    if (config.cullIdleSeconds <= 0 && !Object.values(overrides).some((t) => t > 0)) return;
    this.#cullTimer = setInterval(() => {
      const now = Date.now();
      for (const kernel of this.#kernels.values()) {
        const timeout = timeoutOf(kernel.language);
        const cullable =
          (kernel.state === 'idle' || (config.cullBusy && kernel.state === 'busy')) &&
          (config.cullConnected || !isConnected(kernel.notebookId));
        if (
          timeout > 0 &&
          cullable &&
          now - kernel.lastActivity > timeout * 1000 &&
          !this.#stopping.has(kernel)
        ) {
          this.#log.info({ kernelId: kernel.id, notebookId: kernel.notebookId }, 'culling idle kernel');
          void kernel.kill(`the kernel was ${kernel.state} for more than ${timeout} s and was stopped`);
        }
      }
    }, config.cullIntervalSeconds * 1000).unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#cullTimer);
    this.#closed = true;
    await Promise.allSettled(this.#starting.values());
    const pooled = [...this.#pool.values()].flat();
    this.#pool.clear();
    await Promise.all(
      [...this.#kernels.values(), ...pooled].map((k) => this.#stop(k, 'the server is shutting down')),
    );
  }

  #poolRoot(): string {
    return poolRootOf(this.#config.workspaceDir);
  }

  #limits(): SandboxLimits {
    const config = this.#config;
    return {
      memoryBytes: config.kernelMemoryMb * 1048576,
      maxProcesses: config.kernelMaxProcesses,
      tmpBytes: config.kernelTmpMb * 1048576,
      cpus: config.kernelCpus,
      openFiles: config.kernelMaxOpenFiles,
      fileBytes: config.kernelMaxFileMb * 1048576,
    };
  }

  #workspaceQuota(): { bytes: number; inodes: number } | undefined {
    const config = this.#config;
    return config.workspaceMb > 0
      ? { bytes: config.workspaceMb * 1048576, inodes: config.workspaceInodes }
      : undefined;
  }

  /** Starts pooled kernels until the language's pool is full; a failed start retries later. */
  #refill(language: Language): void {
    const size = this.#poolSizes.get(language) ?? 0;
    const ready = this.#pool.get(language) ?? [];
    this.#pool.set(language, ready);
    const filling = this.#filling.get(language) ?? 0;
    if (this.#closed || ready.length + filling >= size) return;
    this.#filling.set(language, filling + 1);
    const id = randomUUID();
    const poolId = `pool-${id}`;
    let started: Kernel | undefined;
    Kernel.start(this.#sandbox, this.#drivers[language]!, {
      notebookId: poolId,
      workspace: join(this.#poolRoot(), id),
      workspaceQuota: this.#workspaceQuota(),
      limits: this.#limits(),
      network: this.#config.sandboxNetwork,
      log: this.#log,
      // The debug feed shows a pooled kernel's messages once a notebook has claimed it.
      onMessage: this.#config.debugFeed
        ? (direction, message) => {
            const notebookId = started?.notebookId;
            if (notebookId && notebookId !== poolId) {
              this.#events?.publish(notebookId, { type: 'kernel.message', language, direction, message });
            }
          }
        : undefined,
    }).then(
      (kernel) => {
        started = kernel;
        this.#filling.set(language, this.#filling.get(language)! - 1);
        if (this.#closed) return void kernel.kill('the server is shutting down');
        ready.push(kernel);
        // A pooled kernel that dies (it should not) just leaves the pool.
        void kernel.exited.then(() => {
          const at = ready.indexOf(kernel);
          if (at >= 0) ready.splice(at, 1);
          this.#refill(language);
        });
        this.#refill(language);
      },
      (err: unknown) => {
        this.#filling.set(language, this.#filling.get(language)! - 1);
        this.#log.warn({ err, language }, 'could not start a pooled kernel; retrying in 5 s');
        setTimeout(() => this.#refill(language), 5000).unref();
      },
    );
  }

  /** A pooled kernel handed to a new notebook, or undefined (no pooled kernel, not new). */
  async #claim(notebookId: string, language: Language, workspace: string): Promise<Kernel | undefined> {
    const ready = this.#pool.get(language);
    if (!ready?.length || existsSync(workspace) || this.isActive(notebookId)) return undefined;
    const kernel = ready.shift()!;
    // Not while the claiming cell runs: starting a kernel takes the event loop and a core.
    setTimeout(() => this.#refill(language), REFILL_DELAY_MS).unref();
    try {
      await kernel.assign(this.#sandbox, notebookId, workspace);
      return kernel;
    } catch (err) {
      // E.g. a file operation of the notebook started meanwhile: start a kernel the usual way.
      this.#log.info({ err, notebookId }, 'pooled kernel not used');
      await this.#stop(kernel, 'the pooled kernel could not be handed over');
      return undefined;
    }
  }

  async #start(key: string, notebookId: string, language: Language): Promise<Kernel> {
    if (!isSafeId(notebookId)) throw new Error(`unsafe notebook id ${JSON.stringify(notebookId)}`);
    await this.#makeRoom();
    const lost = this.#lost.has(key);
    this.#state(notebookId, language, lost ? 'restarted' : 'starting', lost);
    const config = this.#config;
    const driver = this.#drivers[language];
    if (!driver) throw new Error(`no kernel driver for ${language}`);
    const workspace = join(config.workspaceDir, notebookId);
    const starting = this.#claim(notebookId, language, workspace).then(
      (claimed) =>
        claimed ??
        Kernel.start(this.#sandbox, driver, {
          notebookId,
          workspace,
          workspaceQuota: this.#workspaceQuota(),
          limits: this.#limits(),
          network: config.sandboxNetwork,
          log: this.#log,
          onMessage: config.debugFeed
            ? (direction, message) =>
                this.#events?.publish(notebookId, { type: 'kernel.message', language, direction, message })
            : undefined,
        }),
    );
    this.#starting.set(key, starting);
    try {
      const kernel = await starting;
      this.#kernels.set(key, kernel);
      this.#state(notebookId, language, 'idle');
      void kernel.exited.then(() => {
        this.#state(notebookId, language, 'dead', true);
        if (this.#kernels.get(key) === kernel) this.#kernels.delete(key);
        if (!this.#stopping.delete(kernel)) this.#lost.add(key);
      });
      return kernel;
    } finally {
      this.#starting.delete(key);
    }
  }

  /** kernel.state: starting (restarted when the notebook had lost its context), idle, dead. */
  #state(notebookId: string, language: Language, state: string, contextLost = false): void {
    this.#events?.publish(notebookId, {
      type: 'kernel.state',
      language,
      state,
      ...(contextLost ? { contextLost } : {}),
    });
  }

  /** Stops least recently used idle kernels until there is room for one more. */
  async #makeRoom(): Promise<void> {
    while (this.#kernels.size + this.#starting.size >= this.#config.maxKernels) {
      const idle = [...this.#kernels.values()]
        .filter((k) => k.state === 'idle' && !this.#stopping.has(k))
        .sort((a, b) => a.lastActivity - b.lastActivity);
      const victim = idle[0];
      if (!victim) throw new Error(`all ${this.#config.maxKernels} kernels of this machine are busy`);
      this.#log.info(
        { kernelId: victim.id, notebookId: victim.notebookId },
        'stopping idle kernel to make room',
      );
      // Not via #stop: the notebook did lose its context, and its next result must say so.
      await victim.kill('the kernel was stopped to make room for other notebooks');
    }
  }

  async #stop(kernel: Kernel, reason: string): Promise<void> {
    this.#stopping.add(kernel);
    await kernel.kill(reason);
  }
}
