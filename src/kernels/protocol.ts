/**
 * The framed protocol between the server and a built-in kernel driver.
 *
 * The driver reads requests from fd 3 and writes events to fd 4. Neither is the cell's
 * stdout/stderr, so user code that prints, closes stdout or writes binary cannot forge or
 * corrupt a frame; at worst it can break its own kernel, which the server then reports as dead.
 *
 * A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
 * See docs/kernel-protocol.md.
 */

/** fd the driver reads requests from. */
export const REQUEST_FD = 3;
/** fd the driver writes events to. */
export const EVENT_FD = 4;

/** Frames larger than this mean a broken or hostile driver: the kernel is killed. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

export type KernelRequest =
  | { type: 'execute'; id: number; code: string; maxOutputBytes: number }
  | { type: 'interrupt'; id: number }
  /** The answer to an input_request: a line, or null (the cell gets EOFError with `error`). */
  | { type: 'input_reply'; id: number; value: string | null; error?: string };

/** mime type → content (text, base64 for binary types, or JSON for application/json). */
export type MimeBundle = Record<string, unknown>;

export type KernelEvent =
  | { type: 'ready'; language: string; version: string }
  | { type: 'stream'; id: number; name: 'stdout' | 'stderr'; text: string }
  /** The cell called input(): it waits for an input_reply. */
  | { type: 'input_request'; id: number; prompt: string; password: boolean }
  /** display(obj): a Jupyter mime bundle (binary types base64), in order with the streams. */
  | { type: 'display'; id: number; data: MimeBundle; metadata?: Record<string, unknown> }
  | {
      type: 'result';
      id: number;
      status: 'ok';
      /** Text form of the trailing expression's value, as a REPL shows it; null when there is none. */
      value: string | null;
      /** The value's full mime bundle, when it has more than text/plain (rich repr). */
      data?: MimeBundle;
      metadata?: Record<string, unknown>;
      /** Output bytes the driver dropped because the cell passed maxOutputBytes. */
      dropped?: number;
    }
  | {
      type: 'result';
      id: number;
      status: 'error';
      ename: string;
      evalue: string;
      /** Traceback lines, user code only, already formatted as the language shows them. */
      traceback: string[];
      /** True when the error is the result of an interrupt request. */
      interrupted?: boolean;
      dropped?: number;
    };

export function encodeFrame(message: KernelRequest | KernelEvent): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

export class FrameError extends Error {}

/**
 * Incremental decoder: feed it chunks as they arrive, get whole messages back.
 * Keeps at most one partial frame buffered.
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;

  push(chunk: Buffer): unknown[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const messages: unknown[] = [];
    while (this.#buffered >= 4) {
      const head = this.#peek(4);
      const length = head.readUInt32BE(0);
      if (length > MAX_FRAME_BYTES) throw new FrameError(`frame of ${length} bytes exceeds the limit`);
      if (this.#buffered < 4 + length) break;
      const frame = this.#take(4 + length);
      try {
        messages.push(JSON.parse(frame.toString('utf8', 4)));
      } catch {
        throw new FrameError('frame is not valid JSON');
      }
    }
    return messages;
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0]!.length < n) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]!.subarray(0, n);
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const frame = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return frame;
  }
}

const isObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);
const isId = (x: unknown): x is number => Number.isSafeInteger(x);
const isCount = (x: unknown) => x === undefined || (Number.isSafeInteger(x) && (x as number) >= 0);
const isStrings = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === 'string');

/**
 * Whether a decoded frame is a well-formed event. The channel is writable by the cell's code,
 * so nothing from it is trusted: a frame of any other shape means a broken or hostile kernel.
 */
export function isKernelEvent(x: unknown): x is KernelEvent {
  if (!isObject(x)) return false;
  switch (x.type) {
    case 'ready':
      return typeof x.language === 'string' && typeof x.version === 'string';
    case 'stream':
      return isId(x.id) && (x.name === 'stdout' || x.name === 'stderr') && typeof x.text === 'string';
    case 'display':
      return isId(x.id) && isObject(x.data) && (x.metadata === undefined || isObject(x.metadata));
    case 'input_request':
      return isId(x.id) && typeof x.prompt === 'string' && typeof x.password === 'boolean';
    case 'result':
      if (!isId(x.id) || !isCount(x.dropped)) return false;
      if (x.status === 'ok') {
        return (
          (x.value === null || typeof x.value === 'string') &&
          (x.data === undefined || isObject(x.data)) &&
          (x.metadata === undefined || isObject(x.metadata))
        );
      }
      return (
        x.status === 'error' &&
        typeof x.ename === 'string' &&
        typeof x.evalue === 'string' &&
        isStrings(x.traceback) &&
        (x.interrupted === undefined || typeof x.interrupted === 'boolean')
      );
    default:
      return false;
  }
}
