/**
 * A Server-Sent Events response: headers (with those hooks set, e.g. CORS), framed events, a
 * heartbeat, and a bound on what may wait in the socket's buffer: `followAtClientPace` stops
 * sending to a client that far behind and goes on from its source's log once the socket drains.
 */
import type { FastifyReply } from 'fastify';

const MAX_BUFFERED_BYTES = 1 << 20;
const HEARTBEAT_MS = 15_000;

export interface EventStream {
  send(id: string | number, type: string, data: unknown): void;
  end(): void;
  readonly ended: boolean;
  /** More than MAX_BUFFERED_BYTES wait to be sent. */
  readonly backedUp: boolean;
  /** Called once when the socket's buffer has been sent. */
  onDrain(fn: () => void): void;
  /** Called once when the stream ends, whoever ends it. */
  onEnd(fn: () => void): void;
}

export function openEventStream(reply: FastifyReply): EventStream {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no', // proxies must not hold events back
  });
  const heartbeat = setInterval(() => raw.write(': keepalive\n\n'), HEARTBEAT_MS);
  const listeners: (() => void)[] = [];
  let ended = false;
  const stream: EventStream = {
    get ended() {
      return ended;
    },
    get backedUp() {
      return raw.writableLength > MAX_BUFFERED_BYTES;
    },
    send(id, type, data) {
      if (ended) return;
      raw.write(`id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    onDrain(fn) {
      raw.once('drain', fn);
    },
    end() {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      for (const fn of listeners) fn();
      raw.end();
    },
    onEnd(fn) {
      if (ended) fn();
      else listeners.push(fn);
    },
  };
  raw.on('close', () => stream.end());
  return stream;
}

/** Follows a source from the event after `after`; the returned function stops (undefined: no such source). */
export type Follow<E> = (
  after: string | undefined,
  onEvent: (event: E) => void,
) => Promise<(() => void) | undefined> | (() => void);

/**
 * Sends what `follow` delivers, at the client's pace. `send` writes one event and returns its id.
 * When the client falls MAX_BUFFERED_BYTES behind, this stops following and, once the socket has
 * drained, follows again after the last id sent: the source replays from its log what came in
 * between. A slow reader is neither dropped nor makes the server buffer without bound. A source
 * that no longer exists ends the stream.
 */
export async function followAtClientPace<E>(
  stream: EventStream,
  after: string | undefined,
  follow: Follow<E>,
  send: (event: E) => string,
): Promise<void> {
  let last = after;
  let stop: (() => void) | undefined; // the current round's, while it follows
  stream.onEnd(() => stop?.());
  const round = async (): Promise<void> => {
    let paused = false;
    let current: (() => void) | undefined; // unset while `follow` replays its log
    current = await follow(last, (event) => {
      if (paused || stream.ended) return;
      last = send(event);
      if (!stream.backedUp || stream.ended) return;
      paused = true;
      current?.();
      stop = undefined;
      stream.onDrain(() => void round());
    });
    if (!current) return stream.end();
    if (paused || stream.ended) current();
    else stop = current;
  };
  return round();
}

/** The Last-Event-ID a reconnecting client sent (header, or ?lastEventId= for clients that cannot). */
export function lastEventId(
  headers: Record<string, string | string[] | undefined>,
  query?: string,
): string | undefined {
  const header = headers['last-event-id'];
  return (Array.isArray(header) ? header[0] : header) ?? query;
}
