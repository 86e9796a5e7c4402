/** MemoryEventBus: the embedded EventBus, in this process. */
import { EventEmitter } from 'node:events';
import type { EventBus } from './queue.ts';

export class MemoryEventBus implements EventBus {
  readonly #emitter = new EventEmitter().setMaxListeners(0);

  publish(topic: string, event: unknown): void {
    this.#emitter.emit(topic, event);
  }

  subscribe(topic: string, listener: (event: unknown) => void): () => void {
    this.#emitter.on(topic, listener);
    return () => this.#emitter.off(topic, listener);
  }

  async close(): Promise<void> {
    this.#emitter.removeAllListeners();
  }
}
