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
import { followAtClientPace, lastEventId, openEventStream } from './sse.ts';

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
            'The stream ends after submission.finished. A client that reads slowly is sent events at its own pace.',
          params: Type.Object({ submissionId: Type.String({ maxLength: 128 }) }),
          querystring: Type.Object({ lastEventId: Type.Optional(Type.String({ maxLength: 32 })) }),
          response: { 200: { description: 'text/event-stream', type: 'string' }, ...errorResponses },
        },
      },
      async (req, reply) => {
        const lastId = lastEventId(req.headers, req.query.lastEventId);
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
        const stream = openEventStream(reply);
        await followAtClientPace(
          stream,
          lastId,
          (after, onEvent) => engine.subscribe(submissionId, after, onEvent),
          (event: SubmissionEvent) => {
            stream.send(event.id, event.type, event);
            if (event.type === 'submission.finished') stream.end();
            return event.id;
          },
        );
      },
    );
  };
}
