/**
 * Engine: accepts submissions, runs their cells in order on the notebook's kernels, and records
 * every result in the Store before announcing it on the EventBus. One submission per notebook
 * runs at a time (the Queue's lanes); notebooks run in parallel up to the configured limit.
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import { RuncellError } from '../errors.ts';
import type { EventBus, Queue, QueueTask } from '../queue/queue.ts';
import {
  FINAL_STATES,
  type CellResult,
  type JupyterOutput,
  type NewSubmission,
  type Store,
  type Submission,
  type SubmissionState,
  type SubmittedCell,
} from '../store/store.ts';
import { criticalResult, toCellResult } from './cell-result.ts';
import {
  compareEventIds,
  eventId,
  eventsFromRecord,
  finishedId,
  pennantStatus,
  type SubmissionEvent,
} from './submission-events.ts';
import type { KernelManager } from './kernel-manager.ts';
import type { NotebookFeed } from './notebook-feed.ts';
import type { Language } from './languages.ts';
import { resolveKernel, type Runtime } from './runtimes.ts';

export interface SubmitInput {
  notebookId: string;
  cells: { cellId: string; code: string; language?: string }[];
  /** Seconds per cell. */
  timeout?: number;
  language?: string;
  stopOnError?: boolean;
  /** Submitted by a client that answers input() (the notebook WebSocket). */
  interactive?: boolean;
}

export interface EngineDeps {
  config: Config;
  store: Store;
  queue: Queue;
  bus: EventBus;
  kernels: KernelManager;
  feed: NotebookFeed;
  /** What this machine offers (discoverRuntimes). */
  runtimes: Runtime[];
  log: FastifyBaseLogger;
}

export const submissionTopic = (id: string) => `submission:${id}`;

/** The running submission of a notebook, and whether a reset asked it to stop. */
interface Running {
  submissionId: string;
  /** Not written on its own: the first result's commit records it (see Store.addResult). */
  startedAt: string;
  stopReason: string | undefined;
}

export class Engine {
  readonly #config: Config;
  readonly #store: Store;
  readonly #queue: Queue;
  readonly #bus: EventBus;
  readonly #kernels: KernelManager;
  readonly #feed: NotebookFeed;
  readonly #runtimes: Runtime[];
  readonly #log: FastifyBaseLogger;
  readonly #running = new Map<string, Running>();
  /** Live events of running submissions, for streams that start or resume mid-way. */
  readonly #logs = new Map<string, SubmissionEvent[]>();
  /** Submissions whose client answers input(); other cells get EOFError from it at once. */
  readonly #interactive = new Set<string>();
  /** The input() a notebook's running cell waits for. */
  readonly #inputs = new Map<string, (value: string | null) => void>();
  /** Submissions accepted but not yet committed: their run may start meanwhile (see submit). */
  readonly #creating = new Map<string, { submission: Submission; durable: Promise<boolean> }>();
  #closing: string | undefined;
  #closed: Promise<void> | undefined;

  constructor(deps: EngineDeps) {
    this.#config = deps.config;
    this.#store = deps.store;
    this.#queue = deps.queue;
    this.#bus = deps.bus;
    this.#kernels = deps.kernels;
    this.#feed = deps.feed;
    this.#runtimes = deps.runtimes;
    this.#log = deps.log;
  }

  /** Ends what a previous run of the server left unfinished, then starts taking work. */
  async init(): Promise<void> {
    await this.#failUnfinished('the server restarted before this submission finished');
    this.#queue.process((task) => this.#run(task));
    this.#kernels.startCulling((notebookId) => this.#feed.isFollowed(notebookId));
    await this.#kernels.startPool();
  }

  async submit(input: SubmitInput): Promise<string> {
    if (this.#closing) throw new RuncellError('SHUTTING_DOWN');
    const cells: SubmittedCell[] = input.cells.map((cell) => ({
      cellId: cell.cellId,
      code: cell.code,
      language: this.#language(cell.language ?? input.language ?? this.#config.defaultLanguage),
    }));
    if (cells.length > this.#config.maxCellsPerSubmission) {
      throw new RuncellError(
        'REQUEST_INVALID',
        `a submission may carry at most ${this.#config.maxCellsPerSubmission} cells`,
      );
    }
    const timeout = input.timeout ?? this.#config.cellTimeoutSeconds;
    if (!(timeout > 0))
      throw new RuncellError('REQUEST_INVALID', 'timeout must be a positive number of seconds');
    const id = randomUUID();
    const record: NewSubmission = {
      id,
      notebookId: input.notebookId,
      cells,
      timeoutSeconds: Math.min(timeout, this.#config.maxCellTimeoutSeconds),
      stopOnError: input.stopOnError ?? true,
      createdAt: new Date().toISOString(),
    };
    const created = this.#store.createSubmission(record);
    // The cell is dispatched now, so the kernel runs it while the commit's fsync runs. Nothing of
    // it is stored before the submission is (see #run), and the notebook's feed holds its events
    // until the caller has acknowledged the submission: clients see it accepted first.
    const durable = created.then(
      () => true,
      () => false,
    );
    const submission: Submission = {
      ...record,
      state: 'pending',
      startedAt: null,
      finishedAt: null,
      reason: null,
      results: [],
    };
    this.#creating.set(id, { submission, durable });
    const release = this.#feed.hold(input.notebookId);
    if (input.interactive) this.#interactive.add(id);
    await this.#queue.add({ id, lane: input.notebookId });
    try {
      await created;
    } catch (err) {
      this.#interactive.delete(id);
      release();
      throw err;
    } finally {
      this.#creating.delete(id);
    }
    setImmediate(release); // after the caller's acknowledgement
    return id;
  }

  async get(id: string): Promise<Submission | undefined> {
    return this.#withRunning(await this.#store.getSubmission(id));
  }

  /** A submission as stored, or running if it is (the store learns that with its first result). */
  #withRunning(submission: Submission | undefined): Submission | undefined {
    if (submission?.state !== 'pending') return submission;
    const running = this.#running.get(submission.notebookId);
    if (running?.submissionId !== submission.id) return submission;
    return { ...submission, state: 'running', startedAt: running.startedAt };
  }

  /** The submission once it is final, or as it is after `waitSeconds`. */
  async waitFinal(id: string, waitSeconds: number): Promise<Submission | undefined> {
    let wake!: () => void;
    const finished = new Promise<void>((resolve) => (wake = resolve));
    // Subscribe before reading, so a finish between the read and the wait is not missed.
    const unsubscribe = this.#bus.subscribe(submissionTopic(id), (event) => {
      if ((event as SubmissionEvent).type === 'submission.finished') wake();
    });
    try {
      const current = this.#withRunning(await this.#store.getSubmission(id));
      if (!current || FINAL_STATES.has(current.state) || waitSeconds <= 0) return current;
      const timer = setTimeout(wake, waitSeconds * 1000);
      await finished;
      clearTimeout(timer);
      return this.#withRunning(await this.#store.getSubmission(id));
    } finally {
      unsubscribe();
    }
  }

  /**
   * Fresh context for the notebook: waiting submissions are cancelled (recorded as such), the
   * running one stops after its current cell, and the kernels are killed. Idempotent.
   */
  async reset(notebookId: string): Promise<void> {
    const waiting = await this.#queue.removeWaiting(notebookId);
    const running = this.#running.get(notebookId);
    if (running) running.stopReason = 'the notebook was reset';
    await this.#kernels.reset(notebookId);
    const now = new Date().toISOString();
    for (const task of waiting) {
      await this.#store.finishSubmission(task.id, 'cancelled', now, 'the notebook was reset before it ran');
      this.#announceFinished(notebookId, task.id, 'cancelled', 0);
    }
  }

  /** Gives the line to the notebook's cell waiting in input(); false when none waits. */
  stdin(notebookId: string, value: string): boolean {
    const resolve = this.#inputs.get(notebookId);
    if (!resolve) return false;
    this.#inputs.delete(notebookId);
    resolve(value);
    return true;
  }

  /** Interrupts the notebook's running cell, if any (as a timeout would, without the limit). */
  interrupt(notebookId: string): boolean {
    return this.#kernels.interrupt(notebookId);
  }

  /** Makes the notebook known (files uploaded before its first cell). */
  async addNotebook(notebookId: string): Promise<void> {
    await this.#store.addNotebook(notebookId, new Date().toISOString());
  }

  async notebookStatus(notebookId: string): Promise<{ known: boolean; active: boolean }> {
    const active = this.#kernels.isActive(notebookId);
    return { known: active || (await this.#store.hasNotebook(notebookId)), active };
  }

  /** Stops taking work, ends running cells, records every unfinished submission as failed. */
  close(): Promise<void> {
    return (this.#closed ??= (async () => {
      this.#closing = 'the server shut down before this submission finished';
      for (const running of this.#running.values()) running.stopReason = this.#closing;
      const drained = this.#queue.close(); // no new task starts from here on
      await this.#kernels.close(); // running cells end now, recorded as critical
      await drained;
      await this.#failUnfinished(this.#closing);
    })());
  }

  #language(name: string): Language {
    return resolveKernel(this.#runtimes, name);
  }

  async #run(task: QueueTask): Promise<void> {
    const creating = this.#creating.get(task.id);
    const submission = creating?.submission ?? (await this.#store.getSubmission(task.id));
    if (!submission || FINAL_STATES.has(submission.state)) return;
    const log = this.#log.child({ submissionId: submission.id, notebookId: submission.notebookId });
    const running: Running = {
      submissionId: submission.id,
      startedAt: new Date().toISOString(),
      stopReason: this.#closing,
    };
    this.#running.set(submission.notebookId, running);
    this.#logs.set(submission.id, []);
    let state: SubmissionState = 'success';
    let reason: string | null = null;
    let seq = 0;
    let finished = false;
    // Whether the submission is in the store, for the writes about it: false when its creation
    // failed (the client was told), and then nothing of its run is recorded or announced.
    const stored = async () => {
      if (!creating || (await creating.durable)) return true;
      log.warn('a submission that could not be stored ran; what it did is dropped');
      this.#logs.delete(submission.id);
      return false;
    };
    try {
      for (const cell of submission.cells) {
        if (running.stopReason) {
          state = 'cancelled';
          reason = running.stopReason;
          break;
        }
        const index = seq++;
        const result = await this.#runCell(submission, cell, running, index);
        if (result.type === 'critical') state = 'failed';
        else if (result.type === 'error' && state === 'success') state = 'error';
        const stops = result.type !== 'output' && submission.stopOnError;
        // The last cell's result and the final state are one commit (the hot path: one cell).
        finished = (stops || index === submission.cells.length - 1) && !running.stopReason;
        const finish = finished ? { state, at: new Date().toISOString(), reason } : undefined;
        if (!(await stored())) return;
        await this.#store.addResult(submission.id, index, result, { startedAt: running.startedAt, finish });
        this.#emit(submission.notebookId, {
          type: 'cell.finished',
          id: finishedId(index),
          submissionId: submission.id,
          cellId: cell.cellId,
          result,
        });
        if (stops) break;
      }
      // A reset after the final state was written changes nothing: that submission had ended.
      if (!finished && running.stopReason && state !== 'cancelled') {
        state = 'cancelled';
        reason = running.stopReason;
      }
    } catch (err) {
      // Only infrastructure can land here (the store, a bug): record it, never lose the submission.
      log.error({ err }, 'submission failed');
      state = 'failed';
      reason = `internal error: ${(err as Error).message}`;
      finished = false;
    } finally {
      this.#running.delete(submission.notebookId);
    }
    if (!(await stored())) return;
    if (!finished) await this.#store.finishSubmission(submission.id, state, new Date().toISOString(), reason);
    this.#announceFinished(submission.notebookId, submission.id, state, seq);
  }

  async #runCell(
    submission: Submission,
    cell: SubmittedCell,
    running: Running,
    index: number,
  ): Promise<CellResult> {
    const startedAt = new Date().toISOString();
    const base = { submissionId: submission.id, cellId: cell.cellId };
    this.#emit(submission.notebookId, { type: 'cell.started', id: eventId(index, 0), index, ...base });
    let chunk = 0;
    const onOutput = (output: JupyterOutput) => {
      const id = eventId(index, ++chunk);
      if (output.output_type === 'stream') {
        this.#emit(submission.notebookId, {
          type: 'cell.stream',
          id,
          name: output.name,
          text: output.text,
          ...base,
        });
      } else if (output.output_type === 'display_data') {
        const { data, metadata } = output;
        this.#emit(submission.notebookId, { type: 'cell.display', id, data, metadata, ...base });
      }
    };
    let acquired;
    try {
      acquired = await this.#kernels.acquire(submission.notebookId, cell.language);
    } catch (err) {
      return criticalResult(
        cell.cellId,
        cell.language,
        `could not start a ${cell.language} kernel: ${(err as Error).message}`,
        true,
      );
    }
    // A reset or shutdown while the kernel started: do not run the cell in a context being torn down.
    if (running.stopReason) return criticalResult(cell.cellId, cell.language, running.stopReason, false);
    const cpuSeconds = this.#config.cellCpuSeconds || submission.timeoutSeconds;
    const notebookId = submission.notebookId;
    const onInput = this.#interactive.has(submission.id)
      ? (prompt: string, password: boolean) =>
          new Promise<string | null>((resolve) => {
            this.#inputs.set(notebookId, resolve);
            this.#feed.publish(notebookId, { type: 'input.requested', ...base, prompt, password });
          })
      : undefined;
    const kernelState = (state: 'busy' | 'idle') =>
      this.#feed.publish(submission.notebookId, { type: 'kernel.state', language: cell.language, state });
    kernelState('busy');
    const exec = await acquired.kernel.execute(cell.code, {
      timeoutMs: submission.timeoutSeconds * 1000,
      cpuTimeMs: cpuSeconds * 1000,
      cpuCores: this.#config.kernelCpus || availableParallelism(),
      graceMs: this.#config.interruptGraceMs,
      maxOutputBytes: this.#config.maxOutputBytes,
      onOutput,
      onInput,
    });
    this.#inputs.get(notebookId)?.(null); // a request the cell stopped waiting for (interrupted)
    this.#inputs.delete(notebookId);
    if (acquired.kernel.state === 'idle') kernelState('idle');
    const result = toCellResult(exec, {
      cpuSeconds,
      cellId: cell.cellId,
      language: cell.language,
      startedAt,
      timeoutSeconds: submission.timeoutSeconds,
      contextLost: acquired.contextLost,
    });
    return result;
  }

  /** Records a live event (for streams that resume) and announces it, also to the notebook. */
  #emit(notebookId: string, event: SubmissionEvent): void {
    this.#logs.get(event.submissionId)?.push(event);
    this.#bus.publish(submissionTopic(event.submissionId), event);
    const { id, ...rest } = event;
    this.#feed.publish(notebookId, { ...rest, eventId: id });
  }

  /** Called once the final state is in the Store; `results` is how many it holds. */
  #announceFinished(notebookId: string, submissionId: string, state: SubmissionState, results: number): void {
    this.#emit(notebookId, {
      type: 'submission.finished',
      id: eventId(results, 0),
      submissionId,
      state,
      status: pennantStatus(state),
    });
    this.#logs.delete(submissionId); // the Store has everything a late reader needs now
    this.#interactive.delete(submissionId); // also for one cancelled before it ran
  }

  /**
   * Delivers the submission's events after `lastId` in order, each once, then live ones until
   * it finishes. Returns the unsubscribe function, or undefined for an unknown submission.
   */
  async subscribe(
    id: string,
    lastId: string | undefined,
    onEvent: (event: SubmissionEvent) => void,
  ): Promise<(() => void) | undefined> {
    let last = lastId;
    const deliver = (event: SubmissionEvent) => {
      if (compareEventIds(event.id, last) <= 0) return; // already sent (or before the resume point)
      last = event.id;
      onEvent(event);
    };
    let early: SubmissionEvent[] | undefined = [];
    // Subscribe first, then take the snapshot: nothing published in between is missed, and
    // what both hold is delivered once (ids only grow).
    const unsubscribe = this.#bus.subscribe(submissionTopic(id), (event) => {
      if (early) early.push(event as SubmissionEvent);
      else deliver(event as SubmissionEvent);
    });
    const log = this.#logs.get(id);
    let snapshot: SubmissionEvent[];
    if (log) snapshot = [...log];
    else {
      const record = await this.#store.getSubmission(id);
      if (!record) {
        unsubscribe();
        return undefined;
      }
      snapshot = eventsFromRecord(record);
    }
    for (const event of snapshot) deliver(event);
    const queued = early;
    early = undefined;
    for (const event of queued) deliver(event);
    return unsubscribe;
  }

  /** Every submission still pending or running gets a critical result and a final state. */
  async #failUnfinished(why: string): Promise<void> {
    const now = new Date().toISOString();
    for (const submission of await this.#store.listUnfinished()) {
      const cell = submission.cells[submission.results.length] ?? submission.cells.at(-1)!;
      const text = `${why}; this cell did not run to completion and the notebook's context was lost`;
      await this.#store.addResult(
        submission.id,
        submission.results.length,
        criticalResult(cell.cellId, cell.language, text, false),
        { startedAt: submission.startedAt ?? now },
      );
      await this.#store.finishSubmission(submission.id, 'failed', now, why);
      this.#announceFinished(submission.notebookId, submission.id, 'failed', submission.results.length + 1);
    }
  }
}
