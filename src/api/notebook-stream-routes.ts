/**
 * A notebook's live feed: the events of all its submissions and its kernels' states, as
 * Server-Sent Events or over a WebSocket that also takes commands (execute, interrupt). Event
 * ids are per-notebook sequence numbers; resume with Last-Event-ID (SSE) or ?lastEventId=.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import type { Engine } from '../engine/engine.ts';
import type { FeedEvent, NotebookFeed } from '../engine/notebook-feed.ts';
import { RuncellError } from '../errors.ts';
import { errorResponses, Id, SubmitBody } from './schemas.ts';
import { followAtClientPace, lastEventId, openEventStream } from './sse.ts';

const MAX_WS_BUFFERED_BYTES = 1 << 20;

function parseSeq(raw: string | undefined): number {
  if (raw === undefined) return 0;
  if (!/^\d{1,15}$/.test(raw))
    throw new RuncellError('REQUEST_INVALID', `event id ${JSON.stringify(raw)} is not a number`);
  return Number(raw);
}

export function notebookStreamRoutes(engine: Engine, feed: NotebookFeed) {
  return async function (app: FastifyInstance) {
    const params = Type.Object({ notebookId: Id('Notebook id') });
    const querystring = Type.Object({ lastEventId: Type.Optional(Type.String({ maxLength: 16 })) });
    const tags = ['events'];

    app.get<{ Params: { notebookId: string }; Querystring: { lastEventId?: string } }>(
      '/api/v1/notebooks/:notebookId/events',
      {
        schema: {
          tags,
          summary: "Server-Sent Events of a notebook: all its submissions' events and kernel.state",
          params,
          querystring,
          response: { 200: { description: 'text/event-stream', type: 'string' }, ...errorResponses },
        },
      },
      async (req, reply) => {
        const { notebookId } = req.params;
        const last = parseSeq(lastEventId(req.headers, req.query.lastEventId));
        const stream = openEventStream(reply);
        await followAtClientPace(
          stream,
          String(last),
          (after, onEvent) =>
            feed.follow(notebookId, Number(after), onEvent, () =>
              stream.send(0, 'resync', {
                notebookId,
                reason: 'events after the given id are no longer kept',
              }),
            ),
          (event: FeedEvent) => {
            stream.send(event.seq, event.type, event);
            return String(event.seq);
          },
        );
      },
    );

    app.post<{ Params: { notebookId: string }; Body: { value: string } }>(
      '/api/v1/notebooks/:notebookId/stdin',
      {
        schema: {
          tags,
          summary: 'Answer the input() a cell of the notebook waits for (see input.requested)',
          params,
          body: Type.Object({ value: Type.String({ maxLength: 1 << 20 }) }),
          response: {
            200: Type.Object({ delivered: Type.Boolean() }),
            409: Type.Ref('Error'),
            ...errorResponses,
          },
        },
      },
      async (req) => {
        if (!engine.stdin(req.params.notebookId, req.body.value)) throw new RuncellError('STDIN_NOT_WAITING');
        return { delivered: true };
      },
    );

    app.post<{ Params: { notebookId: string } }>(
      '/api/v1/notebooks/:notebookId/interrupt',
      {
        schema: {
          tags,
          summary:
            "Stop the notebook's running cell, keeping its context: the cell's result is an error that says so, and (with stopOnError, the default) the submission's later cells do not run",
          params,
          response: { 200: Type.Object({ interrupted: Type.Boolean() }), ...errorResponses },
        },
      },
      async (req) => ({ interrupted: engine.interrupt(req.params.notebookId) }),
    );

    app.get<{ Params: { notebookId: string }; Querystring: { lastEventId?: string } }>(
      '/api/v1/notebooks/:notebookId/ws',
      {
        websocket: true,
        schema: {
          tags,
          summary: 'WebSocket of a notebook: the same events as /events; send {type:"execute"|"interrupt"}',
          params,
          querystring,
        },
      },
      (socket: WebSocket, req) => {
        const { notebookId } = req.params;
        const reply = (message: unknown) => {
          if (socket.readyState !== socket.OPEN) return;
          socket.send(JSON.stringify(message));
          // A reader this far behind is told where it is and let go: it resumes by lastEventId.
          if (socket.bufferedAmount > MAX_WS_BUFFERED_BYTES)
            socket.close(4008, 'overflow: reconnect with lastEventId');
        };
        let last: number;
        try {
          last = parseSeq(req.query.lastEventId);
        } catch (err) {
          reply({ type: 'error', error: (err as Error).message });
          socket.close(4000, 'bad lastEventId');
          return;
        }
        const stop = feed.follow(
          notebookId,
          last,
          (event: FeedEvent) => reply(event),
          () => reply({ type: 'resync', notebookId, reason: 'events after the given id are no longer kept' }),
        );
        socket.on('close', stop);
        socket.on('message', (data) => void command(data.toString()));

        const command = async (text: string) => {
          let message: { type?: unknown; requestId?: unknown; [k: string]: unknown };
          try {
            message = JSON.parse(text);
          } catch {
            return reply({ type: 'error', error: 'messages are JSON objects' });
          }
          const requestId = message?.requestId;
          try {
            if (message?.type === 'execute') {
              const { cells, timeout, language, stopOnError } = message;
              const body = Object.fromEntries(
                Object.entries({ notebookId, cells, timeout, language, stopOnError }).filter(
                  ([, v]) => v !== undefined,
                ),
              );
              const submissionId = await engine.submit({ ...validateExecute(body), interactive: true });
              reply({ type: 'submitted', requestId, submissionId });
            } else if (message?.type === 'stdin') {
              if (typeof message.value !== 'string')
                throw new RuncellError('REQUEST_INVALID', 'value must be a string');
              if (!engine.stdin(notebookId, message.value)) throw new RuncellError('STDIN_NOT_WAITING');
              reply({ type: 'stdin.accepted', requestId });
            } else if (message?.type === 'interrupt') {
              reply({ type: 'interrupted', requestId, interrupted: engine.interrupt(notebookId) });
            } else {
              reply({ type: 'error', requestId, error: 'type must be "execute", "stdin" or "interrupt"' });
            }
          } catch (err) {
            reply({ type: 'error', requestId, error: (err as Error).message });
          }
        };
      },
    );
  };
}

/** The WebSocket execute command: the body of POST /api/submit, checked against its schema. */
function validateExecute(input: Record<string, unknown>): Parameters<Engine['submit']>[0] {
  if (!Value.Check(SubmitBody, input)) {
    const first = [...Value.Errors(SubmitBody, input)][0];
    throw new RuncellError(
      'REQUEST_INVALID',
      `invalid execute: ${first?.path || '/'} ${first?.message ?? ''}`.trim(),
    );
  }
  const { timeout, ...body } = input as Static<typeof SubmitBody>;
  return { ...body, timeout: timeout === undefined ? undefined : Number(timeout) };
}
