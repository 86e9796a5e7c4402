/**
 * Store: the durable record of notebooks, submissions and cell results. Every state change is
 * written here before it is announced. Implementations: SqliteStore (embedded); a PostgreSQL
 * adapter shares the schema and queries (src/store/schema.ts, src/store/kysely-store.ts).
 */
import type { Language } from '../engine/languages.ts';

export type SubmissionState = 'pending' | 'running' | 'success' | 'error' | 'cancelled' | 'failed';

export const FINAL_STATES: ReadonlySet<SubmissionState> = new Set([
  'success',
  'error',
  'cancelled',
  'failed',
]);

export interface SubmittedCell {
  cellId: string;
  code: string;
  language: Language;
}

/** A Jupyter-shaped output (nbformat v4), so a notebook can be written from results without loss. */
export type JupyterOutput =
  | { output_type: 'stream'; name: 'stdout' | 'stderr'; text: string }
  | { output_type: 'display_data'; data: Record<string, unknown>; metadata: Record<string, unknown> }
  | { output_type: 'execute_result'; data: Record<string, unknown>; metadata: Record<string, unknown> }
  | { output_type: 'error'; ename: string; evalue: string; traceback: string[] };

export type ResultType = 'output' | 'error' | 'critical';

export interface CellResult {
  cellId: string;
  type: ResultType;
  /** Pennant's text: stdout and stderr interleaved, then the value or the error. */
  output: string;
  language: Language;
  /** False for a critical result recorded for a cell that never ran (e.g. server restart). */
  executed: boolean;
  outputs: JupyterOutput[];
  /** Output bytes dropped because the cell passed the output limit. */
  droppedBytes: number;
  /** The cell ran past its wall-clock timeout. */
  timedOut: boolean;
  /** The limit that stopped the cell, if one did. */
  limit: 'timeout' | 'cpu-time' | null;
  /** CPU time of all the kernel's processes during the cell, where the sandbox accounts it. */
  cpuMs?: number;
  /** The kernel's variables are gone (it was killed, died or reset). */
  contextLost: boolean;
  startedAt: string;
  durationMs: number;
}

/** What a result's commit also records of its submission (see Store.addResult). */
export interface ResultProgress {
  startedAt: string;
  finish?: { state: SubmissionState; at: string; reason: string | null };
}

export interface NewSubmission {
  id: string;
  notebookId: string;
  cells: SubmittedCell[];
  timeoutSeconds: number;
  stopOnError: boolean;
  createdAt: string;
}

export interface Submission extends NewSubmission {
  state: SubmissionState;
  startedAt: string | null;
  finishedAt: string | null;
  /** Why it ended as it did, when that is not obvious from the results. */
  reason: string | null;
  results: CellResult[];
}

/** A notebook's server-side document; the store keeps its body as an opaque JSON text. */
export interface StoredDocument {
  notebookId: string;
  version: number;
  body: string;
  createdAt: string;
  updatedAt: string;
}

export type JobState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export const FINAL_JOB_STATES: ReadonlySet<JobState> = new Set(['completed', 'failed', 'cancelled']);

/** Why a job ended as it did, when its exit code does not say it all. */
export type JobReason =
  | 'timeout'
  | 'cpu-time'
  | 'memory'
  | 'output-limit'
  | 'pids'
  | 'cancelled'
  | 'compile-error'
  | 'server-restart'
  | 'server-shutdown'
  | 'sandbox-error';

/** The limits a job ran under, after the server's maximums. */
export interface JobLimits {
  wallMs: number;
  cpuMs: number;
  memoryBytes: number;
  processes: number;
  /** Bytes kept of stdout, and of stderr; more ends the job. */
  outputBytes: number;
}

/** What one sandboxed step of a job (its compilation, or its run) did, measured by the cgroup. */
export interface JobStep {
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  exitCode: number | null;
  signal: string | null;
  /** Null where the sandbox does not account it (no cgroups). */
  cpuMs: number | null;
  wallMs: number;
  peakMemoryBytes: number | null;
  /** The limit that ended the step, when one did. */
  reason: JobReason | null;
}

/** A one-shot program or shell command; the run step's results are its own fields. */
export interface Job extends JobStep {
  id: string;
  /** The client's own reference (EDC's uuid), when it gave one. */
  ref: string | null;
  kind: 'program' | 'command';
  language: string | null;
  version: string | null;
  /** The shell command of a command job. */
  command: string | null;
  state: JobState;
  /** Says, for people, why the job ended as it did; null when it simply ran. */
  message: string | null;
  limits: JobLimits;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** The compilation, for languages that have one, once it ran. */
  compile: JobStep | null;
}

export interface JobQuery {
  state?: JobState;
  language?: string;
  ref?: string;
  /** Created at or after this ISO time. */
  since?: string;
  /** Only jobs that sort after this one (a page's last): the cursor. */
  after?: { createdAt: string; id: string };
  limit: number;
}

export interface Store {
  init(): Promise<void>;
  /** Records the submission as pending, and its notebook as seen. */
  createSubmission(submission: NewSubmission): Promise<void>;
  getSubmission(id: string): Promise<Submission | undefined>;
  /**
   * Records result number `seq` (0, 1, ...) of a submission. One runner owns a submission, so
   * seq is simply its count of results so far; a duplicate seq is an error, never an overwrite.
   * The same commit marks the submission running since `startedAt` (its start is not written
   * on its own: the engine knows what runs) or, with `finish`, gives it its final state.
   */
  addResult(submissionId: string, seq: number, result: CellResult, progress: ResultProgress): Promise<void>;
  finishSubmission(id: string, state: SubmissionState, at: string, reason: string | null): Promise<void>;
  /** Submissions not in a final state (pending or running), oldest first. */
  listUnfinished(): Promise<Submission[]>;
  hasNotebook(notebookId: string): Promise<boolean>;
  /** Records the notebook as seen (idempotent). */
  addNotebook(notebookId: string, at: string): Promise<void>;
  /** Records the document, and its notebook as seen; false when the notebook already has one. */
  createDocument(document: StoredDocument): Promise<boolean>;
  getDocument(notebookId: string): Promise<StoredDocument | undefined>;
  /** Replaces the body of an existing document. */
  updateDocument(notebookId: string, version: number, body: string, at: string): Promise<void>;
  /** Records the job as it now is, created or updated (the whole record is rewritten). */
  saveJob(job: Job): Promise<void>;
  getJob(id: string): Promise<Job | undefined>;
  /** Newest first: by createdAt, then id, both descending. */
  listJobs(query: JobQuery): Promise<Job[]>;
  /** Jobs not in a final state (queued or running), oldest first. */
  listUnfinishedJobs(): Promise<Job[]>;
  /** Idempotent. */
  close(): Promise<void>;
}
