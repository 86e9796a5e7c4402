/** Clients of the notebook-document API for tests: HTTP calls, a feed follower, a replica. */
import type { FastifyInstance } from 'fastify';
import WebSocket from 'ws';

export interface Reply {
  status: number;
  body: any;
}

export async function call(
  app: FastifyInstance,
  method: string,
  url: string,
  payload?: unknown,
): Promise<Reply> {
  const res = await app.inject({
    method: method as 'GET',
    url,
    ...(payload === undefined ? {} : { payload: payload as object }),
  });
  return {
    status: res.statusCode,
    body: String(res.headers['content-type'] ?? '').includes('json') ? res.json() : res.body,
  };
}

/** The call's body, after checking its status. */
export async function ok(app: FastifyInstance, method: string, url: string, payload?: unknown, status = 200) {
  const reply = await call(app, method, url, payload);
  if (reply.status !== status)
    throw new Error(
      `${method} ${url} answered ${reply.status}, not ${status}: ${JSON.stringify(reply.body)}`,
    );
  return reply.body;
}

/** Polls the document until `test` holds (results land asynchronously). */
export async function until(app: FastifyInstance, id: string, test: (doc: any) => boolean, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const doc = await ok(app, 'GET', `/api/v1/notebooks/${id}`);
    if (test(doc)) return doc;
    if (Date.now() > deadline) throw new Error(`document ${id} never got there: ${JSON.stringify(doc)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Message {
  type: string;
  seq?: number;
  version?: number;
  op?: string;
  [k: string]: unknown;
}

/** A WebSocket follower of the notebook's feed that records every message. */
export async function follow(port: number, id: string, lastEventId?: number) {
  const query = lastEventId === undefined ? '' : `?lastEventId=${lastEventId}`;
  const socket = new WebSocket(`ws://127.0.0.1:${port}/api/v1/notebooks/${id}/ws${query}`);
  const messages: Message[] = [];
  const waiters: { test: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString()) as Message;
    messages.push(message);
    for (const w of [...waiters]) {
      if (w.test(message)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(message);
      }
    }
  });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const next = (test: (m: Message) => boolean) =>
    new Promise<Message>((resolve) => {
      const seen = messages.find(test);
      if (seen) resolve(seen);
      else waiters.push({ test, resolve });
    });
  return { socket, messages, next };
}

/**
 * What a client holds: the state a GET gave it, with every document.changed event after it
 * applied in order. Events of versions it already holds are skipped; a gap is a failure.
 */
export class Replica {
  doc: any;
  constructor(doc: any) {
    this.doc = structuredClone(doc);
  }

  apply(e: any): void {
    if (e.type !== 'document.changed' || e.version <= this.doc.version) return;
    if (e.version !== this.doc.version + 1) throw new Error(`gap: at ${this.doc.version}, got ${e.version}`);
    const cells = this.doc.cells as any[];
    const find = () => cells.find((c) => c.id === e.cellId);
    switch (e.op) {
      case 'insert':
        cells.splice(e.index, 0, e.cell);
        break;
      case 'delete':
        cells.splice(
          cells.findIndex((c) => c.id === e.cellId),
          1,
        );
        break;
      case 'move': {
        const [cell] = cells.splice(
          cells.findIndex((c) => c.id === e.cellId),
          1,
        );
        cells.splice(e.index, 0, cell);
        break;
      }
      case 'edit': {
        const cell = find();
        if (e.cell_type && e.cell_type !== cell.cell_type) {
          cell.cell_type = e.cell_type;
          if (e.cell_type === 'code') Object.assign(cell, { outputs: [], execution_count: null });
          else (delete cell.outputs, delete cell.execution_count);
        }
        if (e.source !== undefined) cell.source = e.source;
        if (e.metadata !== undefined) cell.metadata = e.metadata;
        if (e.outputs) Object.assign(cell, { outputs: [], execution_count: null });
        break;
      }
      case 'outputs':
        Object.assign(find(), { outputs: e.outputs, execution_count: e.execution_count });
        break;
      case 'metadata':
        this.doc.metadata = e.metadata;
        break;
      default:
        throw new Error(`unknown op ${e.op}`);
    }
    this.doc.version = e.version;
  }

  /** The parts every client must agree on. */
  get state() {
    const { version, metadata, cells } = this.doc;
    return { version, metadata, cells };
  }
}
