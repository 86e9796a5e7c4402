import type { JupyterOutput } from '../store/store.ts';

export type StreamName = 'stdout' | 'stderr';
/** Sees each piece of output as it is kept: a stream chunk or a display. */
export type OutputListener = (output: JupyterOutput) => void;

type Display = Extract<JupyterOutput, { output_type: 'display_data' }>;

/**
 * A cell's stdout, stderr and displays in the order produced, then its value or traceback, all
 * from one budget of `maxBytes` (UTF-8; a display counts as its JSON) however much the cell
 * prints: the excess is counted and dropped, so the server's memory and the stored result stay
 * bounded.
 */
export class OutputBuffer {
  readonly #maxBytes: number;
  readonly #onOutput: OutputListener | undefined;
  readonly #outputs: ({ output_type: 'stream'; name: StreamName; text: string } | Display)[] = [];
  #bytes = 0;
  #dropped = 0;

  constructor(maxBytes: number, onOutput?: OutputListener) {
    this.#maxBytes = maxBytes;
    this.#onOutput = onOutput;
  }

  append(name: StreamName, text: string): void {
    text = this.fit(text);
    if (text.length === 0) return;
    const last = this.#outputs.at(-1);
    if (last?.output_type === 'stream' && last.name === name) last.text += text;
    else this.#outputs.push({ output_type: 'stream', name, text });
    this.#onOutput?.({ output_type: 'stream', name, text });
  }

  /** A display is kept whole or not at all (half an image is no image). */
  display(data: Record<string, unknown>, metadata: Record<string, unknown>): void {
    const output: Display = { output_type: 'display_data', data, metadata };
    const size = Buffer.byteLength(JSON.stringify(output));
    if (size > this.#maxBytes - this.#bytes) {
      this.#dropped += size;
      return;
    }
    this.#bytes += size;
    this.#outputs.push(output);
    this.#onOutput?.(output);
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

  /** Whether `bytes` more still fit the budget (a rich value is kept only whole). */
  fits(bytes: number): boolean {
    return bytes <= this.#maxBytes - this.#bytes;
  }

  /** Bytes dropped by the driver (its own cap) count as dropped here too. */
  addDropped(bytes: number): void {
    this.#dropped += bytes;
  }

  get droppedBytes(): number {
    return this.#dropped;
  }

  /** stdout and stderr interleaved, with the text/plain form of each display. */
  get text(): string {
    return this.#outputs.map((o) => (o.output_type === 'stream' ? o.text : plainLine(o.data))).join('');
  }

  /** The line that says output was dropped, or '' when nothing was. */
  get marker(): string {
    if (this.#dropped === 0) return '';
    return `[output truncated: ${this.#dropped} bytes dropped, limit ${this.#maxBytes} bytes]\n`;
  }

  get outputs(): JupyterOutput[] {
    return this.#outputs.map((o) => ({ ...o }));
  }
}

function plainLine(data: Record<string, unknown>): string {
  const plain = data['text/plain'];
  if (typeof plain !== 'string' || plain === '') return '';
  return plain.endsWith('\n') ? plain : plain + '\n';
}

/** At most `bytes` of UTF-8, never ending inside a character. */
export function truncateUtf8(text: string, bytes: number): string {
  if (Buffer.byteLength(text) <= bytes) return text;
  return Buffer.from(text)
    .subarray(0, bytes)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
}
