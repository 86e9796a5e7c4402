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

export interface Store {
  init(): Promise<void>;
  /** Records the submission as pending, and its notebook as seen. */
  createSubmission(submission: NewSubmission): Promise<void>;
  getSubmission(id: string): Promise<Submission | undefined>;
  markRunning(id: string, at: string): Promise<void>;
  /**
   * Records result number `seq` (0, 1, ...) of a submission. One runner owns a submission, so
   * seq is simply its count of results so far; a duplicate seq is an error, never an overwrite.
   */
  addResult(submissionId: string, seq: number, result: CellResult): Promise<void>;
  finishSubmission(id: string, state: SubmissionState, at: string, reason: string | null): Promise<void>;
  /** Submissions not in a final state (pending or running), oldest first. */
  listUnfinished(): Promise<Submission[]>;
  hasNotebook(notebookId: string): Promise<boolean>;
  /** Records the notebook as seen (idempotent). */
  addNotebook(notebookId: string, at: string): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}
