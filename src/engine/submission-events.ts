/**
 * The events of one submission, as streams carry them. Every event has an id `<index>.<n>`:
 * `index` is the cell's place among the submission's results, `n` is 0 for cell.started, 1, 2...
 * for its stream chunks and FINISHED for cell.finished; submission.finished is `<results>.0`
 * after the last cell. Ids sort in the order events happen, and the durable ones (started,
 * finished) can be rebuilt from the Store, so a client that resumes with its last id after the
 * server forgot the live log still gets everything after it, once: the finished result holds
 * the whole output of a cell whose chunks it saw only in part.
 */
import type { CellResult, Submission, SubmissionState } from '../store/store.ts';
import type { StreamName } from '../kernels/output-buffer.ts';
import { FINAL_STATES } from '../store/store.ts';

const FINISHED = 999_999_999;

export type SubmissionEvent =
  | { type: 'cell.started'; id: string; submissionId: string; cellId: string; index: number }
  | { type: 'cell.stream'; id: string; submissionId: string; cellId: string; name: StreamName; text: string }
  | {
      type: 'cell.display';
      id: string;
      submissionId: string;
      cellId: string;
      data: Record<string, unknown>;
      metadata: Record<string, unknown>;
    }
  | { type: 'cell.finished'; id: string; submissionId: string; cellId: string; result: CellResult }
  | { type: 'submission.finished'; id: string; submissionId: string; state: SubmissionState; status: string };

export const eventId = (index: number, n: number) => `${index}.${n}`;
export const finishedId = (index: number) => eventId(index, FINISHED);

/** [index, n] of a valid id, else undefined. */
export function parseEventId(id: string): [number, number] | undefined {
  const m = /^(\d{1,9})\.(\d{1,9})$/.exec(id);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** Negative when a comes first. An absent id comes before every event. */
export function compareEventIds(a: string | undefined, b: string | undefined): number {
  const [ai, an] = (a !== undefined && parseEventId(a)) || [-1, -1];
  const [bi, bn] = (b !== undefined && parseEventId(b)) || [-1, -1];
  return ai - bi || an - bn;
}

/** Pennant's view of a state. */
export const pennantStatus = (state: SubmissionState): 'pending' | 'success' | 'error' =>
  state === 'pending' || state === 'running' ? 'pending' : state === 'success' ? 'success' : 'error';

/** The durable events of a submission, rebuilt from its record. */
export function eventsFromRecord(s: Submission): SubmissionEvent[] {
  const events: SubmissionEvent[] = [];
  s.results.forEach((result, index) => {
    const base = { submissionId: s.id, cellId: result.cellId };
    if (result.executed) events.push({ type: 'cell.started', id: eventId(index, 0), index, ...base });
    events.push({ type: 'cell.finished', id: finishedId(index), result, ...base });
  });
  if (FINAL_STATES.has(s.state)) {
    events.push({
      type: 'submission.finished',
      id: eventId(s.results.length, 0),
      submissionId: s.id,
      state: s.state,
      status: pennantStatus(s.state),
    });
  }
  return events;
}
