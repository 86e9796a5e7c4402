/**
 * A Server-Sent Events response: headers (with those hooks set, e.g. CORS), framed events, a
 * heartbeat, and a cap on what may wait in the socket's buffer: a client that falls that far
 * behind gets an `overflow` event naming the last id it was sent and is disconnected, to resume.
 */
import type { FastifyReply } from 'fastify';

const MAX_BUFFERED_BYTES = 1 << 20;
const HEARTBEAT_MS = 15_000;

export interface EventStream {
  send(id: string | number, type: string, data: unknown): void;
  end(): void;
  readonly ended: boolean;
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
    send(id, type, data) {
      if (ended) return;
      raw.write(`id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
      if (raw.writableLength > MAX_BUFFERED_BYTES) {
        raw.write(`event: overflow\ndata: ${JSON.stringify({ lastEventId: String(id) })}\n\n`);
        stream.end();
      }
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

/** The Last-Event-ID a reconnecting client sent (header, or ?lastEventId= for clients that cannot). */
export function lastEventId(
  headers: Record<string, string | string[] | undefined>,
  query?: string,
): string | undefined {
  const header = headers['last-event-id'];
  return (Array.isArray(header) ? header[0] : header) ?? query;
}
