/** MemoryQueue: the embedded Queue, in this process. */
import type { Queue, QueueTask, TaskHandler } from './queue.ts';

export class MemoryQueue implements Queue {
  readonly #concurrency: number;
  readonly #lanes = new Map<string, QueueTask[]>();
  /** Lanes with waiting tasks and nothing running, longest-waiting first (fair across notebooks). */
  readonly #ready: string[] = [];
  readonly #running = new Map<string, Promise<void>>();
  #handler: TaskHandler | undefined;
  #closed: Promise<void> | undefined;

  constructor(concurrency: number) {
    this.#concurrency = concurrency;
  }

  async init(): Promise<void> {}

  process(handler: TaskHandler): void {
    this.#handler = handler;
    this.#pump();
  }

  async add(task: QueueTask): Promise<void> {
    const waiting = this.#lanes.get(task.lane);
    if (waiting) waiting.push(task);
    else this.#lanes.set(task.lane, [task]);
    if (!this.#running.has(task.lane) && !this.#ready.includes(task.lane)) this.#ready.push(task.lane);
    this.#pump();
  }

  async removeWaiting(lane: string): Promise<QueueTask[]> {
    const waiting = this.#lanes.get(lane) ?? [];
    this.#lanes.delete(lane);
    const at = this.#ready.indexOf(lane);
    if (at >= 0) this.#ready.splice(at, 1);
    return waiting;
  }

  #pump(): void {
    while (
      this.#handler &&
      !this.#closed &&
      this.#running.size < this.#concurrency &&
      this.#ready.length > 0
    ) {
      const lane = this.#ready.shift()!;
      const waiting = this.#lanes.get(lane)!;
      const task = waiting.shift()!;
      if (waiting.length === 0) this.#lanes.delete(lane);
      const run = this.#handler(task)
        .catch(() => {}) // the handler records its own failures; the queue must go on
        .finally(() => {
          this.#running.delete(lane);
          if (this.#lanes.has(lane)) this.#ready.push(lane);
          this.#pump();
        });
      this.#running.set(lane, run);
    }
  }

  close(): Promise<void> {
    return (this.#closed ??= Promise.all(this.#running.values()).then(() => undefined));
  }
}
