/**
 * Queue: hands submissions to the engine. Tasks of one lane (a notebook) run one at a time in
 * the order they were added; different lanes run in parallel up to the concurrency limit.
 * Implementations: MemoryQueue (embedded); a BullMQ adapter routes lanes to the worker that
 * holds the notebook's kernels.
 */
export interface QueueTask {
  /** Submission id. */
  id: string;
  /** Serial lane: the notebook id. */
  lane: string;
}

export type TaskHandler = (task: QueueTask) => Promise<void>;

export interface Queue {
  init(): Promise<void>;
  /** Sets the handler and starts taking tasks. Call once. */
  process(handler: TaskHandler): void;
  add(task: QueueTask): Promise<void>;
  /** Removes and returns the tasks of a lane that have not started. */
  removeWaiting(lane: string): Promise<QueueTask[]>;
  /** Stops starting tasks; resolves when the running handlers have returned. Idempotent. */
  close(): Promise<void>;
}

/**
 * EventBus: fans events out to subscribers (long-polls now, streams later).
 * Implementations: MemoryEventBus; Redis pub/sub for many machines.
 */
export interface EventBus {
  publish(topic: string, event: unknown): void;
  /** Returns the unsubscribe function. */
  subscribe(topic: string, listener: (event: unknown) => void): () => void;
  close(): Promise<void>;
}
