/**
 * JobService: one-shot programs and shell commands with admission, persistence and events.
 *
 * At most `concurrency` jobs run at once and `queueSize` more wait; beyond that submit() throws
 * JOB_QUEUE_FULL (429 with Retry-After), so the backlog never grows without bound. Every state
 * change is written to the store before it is announced (wait(), onFinished listeners). Jobs a
 * stopped server left unfinished end at init as `failed` with reason `server-restart`; close()
 * ends queued and running ones as `failed` with reason `server-shutdown`.
 *
 * runcell's API (src/api/job-routes.ts) and the Flux and EDC compatibility routes all map onto
 * submit/get/list/cancel/wait; `ref` carries a client's own id (EDC's uuid).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { RuncellError } from '../errors.ts';
import type { Sandbox } from '../sandbox/sandbox.ts';
import { type Job, type JobLimits, type JobQuery, type JobState, type Store } from '../store/store.ts';
import { planJob, type JobLimitSettings, type JobPlan, type JobRequest } from './job-plan.ts';
import { emptyStep, JobRunner, type JobOutcome, type JobSandboxSettings } from './job-runner.ts';
import { JobWorkspaces } from './job-workspaces.ts';
import { discoverToolchains, type Toolchain } from './toolchains.ts';

export interface JobServiceOptions {
  store: Store;
  sandbox: Sandbox;
  log: FastifyBaseLogger;
  /** Directory of the job workspaces (see JobWorkspaces). */
  workspaceRoot: string;
  /** Bytes and inodes of each job's workspace (its own tmpfs as root); 0 bytes: plain directory. */
  workspaceBytes: number;
  workspaceInodes: number;
  /** Jobs running at once on this machine. */
  concurrency: number;
  /** Jobs waiting beyond those; more are refused with 429. */
  queueSize: number;
  limits: JobLimitSettings;
  sandboxSettings: Omit<JobSandboxSettings, 'cpus'>;
  /** The toolchains to offer; found on this machine at init when absent. */
  toolchains?: Toolchain[];
}

export type JobListener = (job: Job) => void;

export interface JobListQuery extends Omit<JobQuery, 'after' | 'limit'> {
  /** `nextCursor` of the previous page. */
  cursor?: string;
  /** Jobs per page (default 50, at most 200). */
  limit?: number;
}

export interface JobStats {
  running: number;
  queued: number;
  concurrency: number;
  queueSize: number;
}

/** JOB_QUEUE_FULL, with when to come back: the routes send it as Retry-After. */
export class JobQueueFullError extends RuncellError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super('JOB_QUEUE_FULL', `every job slot and queue place is taken; retry in about ${retryAfterSeconds} s`);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

interface LiveJob {
  job: Job;
  plan: JobPlan;
  abort: AbortController;
  /** Set by close(): the kill is the server's, not the client's. */
  shutdown: boolean;
  /** Resolves with the final record once it is stored. */
  done: Promise<Job>;
  resolve: (job: Job) => void;
  /** The latest store write of this job; the next waits for it, so writes stay in order. */
  saved: Promise<void>;
}

const DEFAULT_PAGE = 50;
const MAX_PAGE = 200;
const RECENT_DURATIONS = 20;

const now = () => new Date().toISOString();
const snapshot = (job: Job): Job => structuredClone(job);

function encodeCursor(job: Job): string {
  return Buffer.from(JSON.stringify([job.createdAt, job.id])).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof createdAt === 'string' && typeof id === 'string') return { createdAt, id };
  } catch {
    // fall through
  }
  throw new RuncellError('REQUEST_INVALID', 'cursor is not one this server gave (use nextCursor)');
}

export class JobService {
  readonly #options: JobServiceOptions;
  readonly #store: Store;
  readonly #log: FastifyBaseLogger;
  readonly #workspaces: JobWorkspaces;
  readonly #runner: JobRunner;
  readonly #live = new Map<string, LiveJob>();
  readonly #queue: LiveJob[] = [];
  readonly #listeners = new Set<JobListener>();
  /** Wall times of recent jobs, for Retry-After. */
  readonly #recentMs: number[] = [];
  #toolchains: Toolchain[] = [];
  #running = 0;
  /** Admitted, but still being written to the store before they join the queue. */
  #admitting = 0;
  #closed: Promise<void> | undefined;

  constructor(options: JobServiceOptions) {
    this.#options = options;
    this.#store = options.store;
    this.#log = options.log;
    this.#workspaces = new JobWorkspaces({
      root: options.workspaceRoot,
      bytes: options.workspaceBytes,
      inodes: options.workspaceInodes,
      log: options.log,
    });
    this.#runner = new JobRunner(options.sandbox, this.#workspaces, {
      ...options.sandboxSettings,
      cpus: options.limits.cpus,
    });
  }

  /** Finds the toolchains, prepares the workspaces, and ends what a stopped server left. */
  async init(): Promise<void> {
    const [toolchains] = await Promise.all([
      this.#options.toolchains ?? discoverToolchains(),
      this.#workspaces.init(),
    ]);
    this.#toolchains = toolchains;
    const unfinished = await this.#store.listUnfinishedJobs();
    for (const job of unfinished) {
      await this.#store.saveJob({
        ...job,
        state: 'failed',
        reason: 'server-restart',
        message: `the server stopped while the job was ${job.state}`,
        finishedAt: now(),
      });
    }
    if (unfinished.length > 0)
      this.#log.warn({ jobs: unfinished.length }, 'ended jobs a stopped server left');
  }

  /** Languages and versions jobs may use, newest version first within a language. */
  get toolchains(): readonly Toolchain[] {
    return this.#toolchains;
  }

  /** The most a job may ask for. */
  get maxLimits(): JobLimits {
    return { ...this.#options.limits.max };
  }

  stats(): JobStats {
    return {
      running: this.#running,
      queued: this.#queue.length + this.#admitting,
      concurrency: this.#options.concurrency,
      queueSize: this.#options.queueSize,
    };
  }

  /** Checks and records the job, queued; it starts as soon as a slot is free. */
  async submit(request: JobRequest): Promise<Job> {
    if (this.#closed) throw new RuncellError('SHUTTING_DOWN');
    if (request.ref !== undefined && (request.ref.length === 0 || request.ref.length > 256)) {
      throw new RuncellError('REQUEST_INVALID', 'ref must be 1 to 256 characters');
    }
    const plan = await planJob(request, this.#toolchains, this.#options.limits);
    const { concurrency, queueSize } = this.#options;
    if (this.#running + this.#queue.length + this.#admitting >= concurrency + queueSize) {
      throw new JobQueueFullError(this.#retryAfterSeconds());
    }
    const job: Job = {
      id: randomUUID(),
      ref: request.ref ?? null,
      kind: plan.kind,
      language: plan.toolchain?.language ?? null,
      version: plan.toolchain?.version ?? null,
      command: plan.command ?? null,
      state: 'queued',
      message: null,
      limits: plan.run.limits,
      createdAt: now(),
      startedAt: null,
      finishedAt: null,
      compile: null,
      ...emptyStep(),
    };
    let resolve!: (job: Job) => void;
    const done = new Promise<Job>((r) => (resolve = r));
    this.#admitting++;
    try {
      await this.#store.saveJob(job);
    } finally {
      this.#admitting--;
    }
    const live: LiveJob = {
      job,
      plan,
      abort: new AbortController(),
      shutdown: false,
      done,
      resolve,
      saved: Promise.resolve(),
    };
    this.#live.set(job.id, live);
    this.#queue.push(live);
    const answer = snapshot(job);
    this.#pump();
    return answer;
  }

  async get(id: string): Promise<Job | undefined> {
    const live = this.#live.get(id);
    return live ? snapshot(live.job) : this.#store.getJob(id);
  }

  /** The job once final, or as it is after `seconds`; undefined when there is no such job. */
  async wait(id: string, seconds: number): Promise<Job | undefined> {
    const live = this.#live.get(id);
    if (live && seconds > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        live.done,
        new Promise<void>((r) => (timer = setTimeout(r, seconds * 1000))),
      ]).finally(() => clearTimeout(timer));
    }
    return this.get(id);
  }

  /** Newest first, `limit` a page; `nextCursor` is there when more may follow. */
  async list(query: JobListQuery = {}): Promise<{ jobs: Job[]; nextCursor: string | null }> {
    const limit = Math.min(query.limit ?? DEFAULT_PAGE, MAX_PAGE);
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RuncellError('REQUEST_INVALID', `limit must be 1 to ${MAX_PAGE}`);
    }
    let since: string | undefined;
    if (query.since !== undefined) {
      const at = new Date(query.since);
      if (Number.isNaN(at.getTime())) {
        throw new RuncellError('REQUEST_INVALID', 'since must be an ISO 8601 date and time');
      }
      since = at.toISOString();
    }
    const rows = await this.#store.listJobs({
      state: query.state,
      language: query.language,
      ref: query.ref,
      since,
      after: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
      limit,
    });
    // The store may lag a running job's newest state by a write; the live record is the truth.
    const jobs = rows.map((row) => {
      const live = this.#live.get(row.id);
      return live ? snapshot(live.job) : row;
    });
    return { jobs, nextCursor: jobs.length === limit ? encodeCursor(jobs.at(-1)!) : null };
  }

  /** Ends a queued or running job (its whole process tree), and returns it final. */
  async cancel(id: string): Promise<Job | undefined> {
    const live = this.#live.get(id);
    if (!live) return this.#store.getJob(id);
    const queued = this.#queue.indexOf(live);
    if (queued >= 0) {
      this.#queue.splice(queued, 1);
      await this.#finish(live, {
        compile: null,
        run: null,
        reason: 'cancelled',
        message: 'the job was cancelled',
      });
    } else {
      live.abort.abort();
    }
    return snapshot(await live.done);
  }

  /** Sees every job once it is final and stored. Returns the unsubscribe function. */
  onFinished(listener: JobListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Ends queued and running jobs (recorded as server-shutdown) and stops taking new ones. */
  close(): Promise<void> {
    return (this.#closed ??= (async () => {
      const message = {
        compile: null,
        run: null,
        reason: 'server-shutdown',
        message: 'the server shut down',
      } as const;
      await Promise.all(this.#queue.splice(0).map((live) => this.#finish(live, message)));
      const running = [...this.#live.values()];
      for (const live of running) {
        live.shutdown = true;
        live.abort.abort();
      }
      await Promise.all(running.map((live) => live.done));
      this.#workspaces.close();
    })());
  }

  #pump(): void {
    while (this.#running < this.#options.concurrency && this.#queue.length > 0) {
      const live = this.#queue.shift()!;
      this.#running++;
      void this.#execute(live);
    }
  }

  async #execute(live: LiveJob): Promise<void> {
    const { job } = live;
    job.state = 'running';
    job.startedAt = now();
    this.#save(live);
    let outcome: JobOutcome;
    try {
      outcome = await this.#runner.run(job.id, live.plan, live.abort.signal);
    } catch (err) {
      this.#log.error({ err, jobId: job.id }, 'job could not run');
      outcome = { compile: null, run: null, reason: 'sandbox-error', message: (err as Error).message };
    }
    const wallMs = (outcome.compile?.wallMs ?? 0) + (outcome.run?.wallMs ?? 0);
    this.#recentMs.push(wallMs);
    if (this.#recentMs.length > RECENT_DURATIONS) this.#recentMs.shift();
    // The slot is free once the sandbox is gone: the next job need not wait for this one's write.
    this.#running--;
    this.#pump();
    if (live.shutdown && outcome.reason === 'cancelled') {
      outcome = { ...outcome, reason: 'server-shutdown', message: 'the server shut down' };
    }
    await this.#finish(live, outcome);
  }

  async #finish(live: LiveJob, outcome: JobOutcome): Promise<void> {
    const { job } = live;
    Object.assign(job, outcome.run ?? {});
    job.compile = outcome.compile;
    job.reason = outcome.reason;
    job.message = outcome.message;
    job.state = this.#finalState(job);
    job.finishedAt = now();
    this.#save(live);
    try {
      await live.saved;
    } catch (err) {
      // Still announced: the waiting client should learn the outcome even if the disk failed.
      this.#log.error({ err, jobId: job.id }, 'could not store a finished job');
    }
    this.#live.delete(job.id);
    const final = snapshot(job);
    live.resolve(final);
    for (const listener of this.#listeners) {
      try {
        listener(snapshot(final));
      } catch (err) {
        this.#log.error({ err, jobId: job.id }, 'a job listener failed');
      }
    }
  }

  #finalState(job: Job): JobState {
    if (job.reason === 'cancelled') return 'cancelled';
    return job.reason === null && job.exitCode === 0 ? 'completed' : 'failed';
  }

  /** Queues a write of the job as it is now, after the previous one. */
  #save(live: LiveJob): void {
    const record = snapshot(live.job);
    live.saved = live.saved.catch(() => {}).then(() => this.#store.saveJob(record));
  }

  /** How long until a place is likely free: the queue ahead, at the recent pace. */
  #retryAfterSeconds(): number {
    const recent = this.#recentMs;
    const averageMs = recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : 1000;
    const ahead = this.#queue.length + 1;
    const seconds = Math.ceil((averageMs * ahead) / this.#options.concurrency / 1000);
    return Math.min(60, Math.max(1, seconds));
  }
}
