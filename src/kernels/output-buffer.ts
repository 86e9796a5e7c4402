import type { JupyterOutput } from '../store/store.ts';

type StreamName = 'stdout' | 'stderr';

/**
 * A cell's stdout and stderr in the order written, capped at `maxBytes` (UTF-8) however much
 * the cell prints: the excess is counted and dropped, so the server's memory stays bounded.
 */
export class OutputBuffer {
  readonly #maxBytes: number;
  readonly #streams: { name: StreamName; text: string }[] = [];
  #bytes = 0;
  #dropped = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  append(name: StreamName, text: string): void {
    if (text.length === 0) return;
    const room = this.#maxBytes - this.#bytes;
    let size = Buffer.byteLength(text);
    if (size > room) {
      const kept =
        room > 0
          ? Buffer.from(text)
              .subarray(0, room)
              .toString('utf8')
              .replace(/\uFFFD$/, '')
          : '';
      this.#dropped += size - Buffer.byteLength(kept);
      text = kept;
      size = Buffer.byteLength(kept);
      if (size === 0) return;
    }
    this.#bytes += size;
    const last = this.#streams.at(-1);
    if (last?.name === name) last.text += text;
    else this.#streams.push({ name, text });
  }

  /** Bytes dropped by the driver (its own cap) count as dropped here too. */
  addDropped(bytes: number): void {
    this.#dropped += bytes;
  }

  get droppedBytes(): number {
    return this.#dropped;
  }

  /** stdout and stderr interleaved, with a visible marker where output was dropped. */
  get text(): string {
    const text = this.#streams.map((s) => s.text).join('');
    if (this.#dropped === 0) return text;
    const sep = text === '' || text.endsWith('\n') ? '' : '\n';
    return `${text}${sep}[output truncated: ${this.#dropped} bytes dropped, limit ${this.#maxBytes} bytes]\n`;
  }

  get outputs(): JupyterOutput[] {
    return this.#streams.map((s) => ({ output_type: 'stream', name: s.name, text: s.text }));
  }
}
