/**
 * NotebookFeed: everything that happens in a notebook (events of all its submissions, kernel
 * states), numbered per notebook, with a bounded backlog so a client can resume from the last
 * event it got. A client further behind than the backlog is told to resynchronise (fetch the
 * state, then follow) instead of the server keeping an unbounded history.
 */
import type { EventBus } from '../queue/queue.ts';

export interface FeedEvent {
  seq: number;
  notebookId: string;
  type: string;
  [field: string]: unknown;
}

export interface FeedLimits {
  /** Events kept per notebook. */
  events: number;
  /** Bytes kept per notebook (estimated). */
  bytes: number;
  /** All notebooks together: past this, the backlogs of the least recently active go first. */
  totalBytes: number;
}

const LIMITS: FeedLimits = { events: 2000, bytes: 4 << 20, totalBytes: 64 << 20 };

interface Backlog {
  events: { event: FeedEvent; bytes: number }[];
  bytes: number;
  next: number;
}

export const notebookTopic = (id: string) => `notebook:${id}`;

export class NotebookFeed {
  readonly #bus: EventBus;
  readonly #backlogs = new Map<string, Backlog>();
  readonly #followers = new Map<string, number>();
  #total = 0;

  readonly #limits: FeedLimits;

  constructor(bus: EventBus, limits: FeedLimits = LIMITS) {
    this.#bus = bus;
    this.#limits = limits;
  }

  /** Events held back per notebook (see hold), in order, and how many holds are on. */
  readonly #held = new Map<string, { holds: number; events: { type: string; [field: string]: unknown }[] }>();

  /**
   * Holds the notebook's events back, in order, until the returned function is called (once
   * per hold; they go out when the last hold is released).
   */
  hold(notebookId: string): () => void {
    const held = this.#held.get(notebookId) ?? { holds: 0, events: [] };
    held.holds++;
    this.#held.set(notebookId, held);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--held.holds > 0) return;
      this.#held.delete(notebookId);
      for (const event of held.events) this.publish(notebookId, event);
    };
  }

  publish(notebookId: string, event: { type: string; [field: string]: unknown }): void {
    const held = this.#held.get(notebookId);
    if (held) {
      held.events.push(event);
      return;
    }
    let backlog = this.#backlogs.get(notebookId);
    if (backlog)
      this.#backlogs.delete(notebookId); // re-inserted last: the map is in LRU order
    else backlog = { events: [], bytes: 0, next: 1 };
    this.#backlogs.set(notebookId, backlog);
    const full: FeedEvent = { ...event, seq: backlog.next++, notebookId };
    const bytes = estimateBytes(full);
    backlog.events.push({ event: full, bytes });
    backlog.bytes += bytes;
    this.#total += bytes;
    const limits = this.#limits;
    while (
      backlog.events.length > limits.events ||
      (backlog.bytes > limits.bytes && backlog.events.length > 1)
    ) {
      this.#drop(backlog);
    }
    // Other notebooks' history goes before this one's: their clients resync if they come back.
    for (const other of this.#backlogs.values()) {
      if (this.#total <= limits.totalBytes || other === backlog) break;
      while (other.events.length > 0) this.#drop(other);
    }
    this.#bus.publish(notebookTopic(notebookId), full);
  }

  #drop(backlog: Backlog): void {
    const dropped = backlog.events.shift()!.bytes;
    backlog.bytes -= dropped;
    this.#total -= dropped;
  }

  /** Whether a client follows the notebook right now (a connected notebook, for culling). */
  isFollowed(notebookId: string): boolean {
    return this.#followers.has(notebookId);
  }

  /** Events after `lastSeq`, or 'resync' when some of them are no longer kept. */
  since(notebookId: string, lastSeq: number): FeedEvent[] | 'resync' {
    const backlog = this.#backlogs.get(notebookId);
    if (!backlog) return lastSeq === 0 ? [] : 'resync';
    if (lastSeq >= backlog.next) return 'resync'; // an id from before a restart
    const oldest = backlog.events[0]?.event.seq ?? backlog.next;
    if (lastSeq > 0 && lastSeq < oldest - 1) return 'resync';
    return backlog.events.filter((e) => e.event.seq > lastSeq).map((e) => e.event);
  }

  /**
   * Delivers events after `lastSeq` once each, then live ones, until the returned function is
   * called. When the backlog no longer reaches back that far, `onResync` first, then all it has.
   */
  follow(
    notebookId: string,
    lastSeq: number,
    onEvent: (event: FeedEvent) => void,
    onResync: () => void,
  ): () => void {
    let last = lastSeq;
    const deliver = (event: FeedEvent) => {
      if (event.seq <= last) return;
      last = event.seq;
      onEvent(event);
    };
    const unsubscribeBus = this.#bus.subscribe(notebookTopic(notebookId), (e) => deliver(e as FeedEvent));
    this.#followers.set(notebookId, (this.#followers.get(notebookId) ?? 0) + 1);
    let followed = true;
    const unsubscribe = () => {
      if (!followed) return;
      followed = false;
      unsubscribeBus();
      const left = (this.#followers.get(notebookId) ?? 1) - 1;
      if (left > 0) this.#followers.set(notebookId, left);
      else this.#followers.delete(notebookId);
    };
    let backlog = this.since(notebookId, lastSeq);
    if (backlog === 'resync') {
      onResync();
      last = 0;
      backlog = this.since(notebookId, 0) as FeedEvent[];
    }
    for (const event of backlog) deliver(event);
    return unsubscribe;
  }
}

/**
 * About how much an event holds, without serialising it (results can be large, and this runs for
 * every event): its strings, one level down, plus a constant for the rest.
 */
function estimateBytes(event: Record<string, unknown>): number {
  let bytes = 64;
  for (const value of Object.values(event)) {
    if (typeof value === 'string') bytes += value.length;
    else if (value && typeof value === 'object') {
      for (const inner of Object.values(value)) bytes += typeof inner === 'string' ? inner.length : 64;
    }
  }
  return bytes;
}
