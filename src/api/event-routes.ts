/**
 * Live events of a submission as Server-Sent Events. A client that reconnects sends the id of
 * the last event it got (Last-Event-ID, or ?lastEventId=) and receives what came after, once,
 * also after the submission ended.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../engine/engine.ts';
import { parseEventId, type SubmissionEvent } from '../engine/submission-events.ts';
import { RuncellError } from '../errors.ts';
import { errorResponses } from './schemas.ts';

/** A client this far behind is told to reconnect, so a slow reader cannot grow the server. */
const MAX_BUFFERED_BYTES = 1 << 20;
const HEARTBEAT_MS = 15_000;

export function eventRoutes(engine: Engine) {
  return async function (app: FastifyInstance) {
    app.get<{ Params: { submissionId: string }; Querystring: { lastEventId?: string } }>(
      '/api/v1/submissions/:submissionId/events',
      {
        schema: {
          tags: ['events'],
          summary:
            'Server-Sent Events of a submission: cell.started, cell.stream, cell.finished, submission.finished',
          description:
            'Each event has an id; reconnect with the Last-Event-ID header (or ?lastEventId=) to resume after it. ' +
            'The stream ends after submission.finished. An `overflow` event means the client fell behind: reconnect.',
          params: Type.Object({ submissionId: Type.String({ maxLength: 128 }) }),
          querystring: Type.Object({ lastEventId: Type.Optional(Type.String({ maxLength: 32 })) }),
          response: { 200: { description: 'text/event-stream', type: 'string' }, ...errorResponses },
        },
      },
      async (req, reply) => {
        const header = req.headers['last-event-id'];
        const lastId = (Array.isArray(header) ? header[0] : header) ?? req.query.lastEventId;
        if (lastId !== undefined && !parseEventId(lastId)) {
          throw new RuncellError(
            'REQUEST_INVALID',
            `Last-Event-ID ${JSON.stringify(lastId)} is not an event id of runcell`,
          );
        }
        const { submissionId } = req.params;
        if (!(await engine.get(submissionId))) {
          throw new RuncellError('SUBMISSION_NOT_FOUND', `no submission has id ${submissionId}`);
        }
        reply.hijack();
        const raw = reply.raw;
        raw.writeHead(200, {
          ...(reply.getHeaders() as Record<string, string>),
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
          'x-accel-buffering': 'no', // proxies must not hold events back
        });
        let ended = false;
        let unsubscribe: (() => void) | undefined;
        const heartbeat = setInterval(() => raw.write(': keepalive\n\n'), HEARTBEAT_MS);
        const end = () => {
          if (ended) return;
          ended = true;
          clearInterval(heartbeat);
          unsubscribe?.();
          raw.end();
        };
        raw.on('close', end);
        const send = (event: SubmissionEvent) => {
          if (ended) return;
          raw.write(`id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
          if (event.type === 'submission.finished') end();
          else if (raw.writableLength > MAX_BUFFERED_BYTES) {
            raw.write(`event: overflow\ndata: ${JSON.stringify({ lastEventId: event.id })}\n\n`);
            end();
          }
        };
        unsubscribe = await engine.subscribe(submissionId, lastId, send);
        if (ended) unsubscribe?.();
      },
    );
  };
}
