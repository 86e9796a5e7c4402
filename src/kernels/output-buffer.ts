import type { JupyterOutput } from '../store/store.ts';

export type StreamName = 'stdout' | 'stderr';
export type StreamListener = (name: StreamName, text: string) => void;

/**
 * A cell's stdout and stderr in the order written, then its value or traceback, all from one
 * budget of `maxBytes` (UTF-8) however much the cell prints: the excess is counted and dropped,
 * so the server's memory and the stored result stay bounded.
 */
export class OutputBuffer {
  readonly #maxBytes: number;
  readonly #onAppend: StreamListener | undefined;
  readonly #streams: { name: StreamName; text: string }[] = [];
  #bytes = 0;
  #dropped = 0;

  /** `onAppend` sees each piece of output as it is kept (live streams). */
  constructor(maxBytes: number, onAppend?: StreamListener) {
    this.#maxBytes = maxBytes;
    this.#onAppend = onAppend;
  }

  append(name: StreamName, text: string): void {
    text = this.fit(text);
    if (text.length === 0) return;
    const last = this.#streams.at(-1);
    if (last?.name === name) last.text += text;
    else this.#streams.push({ name, text });
    this.#onAppend?.(name, text);
  }

  /** Takes `text` out of the budget: returns what fits and counts the rest as dropped. */
  fit(text: string): string {
    const size = Buffer.byteLength(text);
    const room = Math.max(0, this.#maxBytes - this.#bytes);
    const kept = size <= room ? text : truncateUtf8(text, room);
    const keptSize = kept === text ? size : Buffer.byteLength(kept);
    this.#bytes += keptSize;
    this.#dropped += size - keptSize;
    return kept;
  }

  /** Bytes dropped by the driver (its own cap) count as dropped here too. */
  addDropped(bytes: number): void {
    this.#dropped += bytes;
  }

  get droppedBytes(): number {
    return this.#dropped;
  }

  /** stdout and stderr interleaved. */
  get text(): string {
    return this.#streams.map((s) => s.text).join('');
  }

  /** The line that says output was dropped, or '' when nothing was. */
  get marker(): string {
    if (this.#dropped === 0) return '';
    return `[output truncated: ${this.#dropped} bytes dropped, limit ${this.#maxBytes} bytes]\n`;
  }

  get outputs(): JupyterOutput[] {
    return this.#streams.map((s) => ({ output_type: 'stream', name: s.name, text: s.text }));
  }
}

/** At most `bytes` of UTF-8, never ending inside a character. */
export function truncateUtf8(text: string, bytes: number): string {
  if (Buffer.byteLength(text) <= bytes) return text;
  return Buffer.from(text)
    .subarray(0, bytes)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
}
