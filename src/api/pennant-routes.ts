/**
 * The Pennant API, served exactly as Pennant's servers document it (seeds 000 and 001), at the
 * root and under a language prefix: Pennant's browser client has one base URL per language
 * and sends no language, so `/javascript/api/submit` means "JavaScript unless the cell says".
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../engine/engine.ts';
import type { Language } from '../engine/languages.ts';
import { pennantStatus } from '../engine/submission-events.ts';
import { RuncellError } from '../errors.ts';
import { formatPython } from '../formatters/python-formatter.ts';
import type { Submission } from '../store/store.ts';
import { errorResponses, Id, SubmitBody } from './schemas.ts';

const SubmitResponse = Type.Object({ message: Type.String(), submissionId: Type.String() });

const ResultSchema = Type.Object(
  {
    cellId: Type.String(),
    type: Type.Union([Type.Literal('output'), Type.Literal('error'), Type.Literal('critical')]),
    output: Type.String({ description: 'stdout and stderr interleaved, then the value or the error' }),
    language: Type.String(),
    outputs: Type.Array(Type.Object({}, { additionalProperties: true }), {
      description: 'Jupyter-shaped outputs (nbformat v4 stream, execute_result, error)',
    }),
    timedOut: Type.Boolean({ description: 'The cell ran past its wall-clock timeout' }),
    limit: Type.Union([Type.Literal('timeout'), Type.Literal('cpu-time'), Type.Null()], {
      description: 'The limit that stopped the cell, if one did',
    }),
    cpuMs: Type.Optional(Type.Number({ description: "CPU time of the kernel's processes during the cell" })),
    contextLost: Type.Boolean({ description: 'The notebook variables were lost before or during this cell' }),
    droppedBytes: Type.Integer({ description: 'Output bytes dropped past the output limit' }),
    durationMs: Type.Number(),
    startedAt: Type.String(),
  },
  { additionalProperties: true },
);

const StatusResponse = Type.Object({
  submissionId: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('success'), Type.Literal('error')], {
    description: 'Pennant status: pending until final, then success or error',
  }),
  state: Type.String({ description: 'Full state: pending, running, success, error, cancelled, failed' }),
  notebookId: Type.String(),
  requestOrder: Type.Array(Type.String()),
  cellsExecuted: Type.Array(Type.String()),
  results: Type.Array(ResultSchema),
  reason: Type.Union([Type.String(), Type.Null()]),
  timeoutSeconds: Type.Number({ description: 'Timeout per cell in force, after the server cap' }),
  createdAt: Type.String(),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
});

const MAX_WAIT_SECONDS = 30;

export function toStatus(s: Submission): Static<typeof StatusResponse> {
  return {
    submissionId: s.id,
    status: pennantStatus(s.state),
    state: s.state,
    notebookId: s.notebookId,
    requestOrder: s.cells.map((c) => c.cellId),
    cellsExecuted: s.results.filter((r) => r.executed).map((r) => r.cellId),
    results: s.results,
    reason: s.reason,
    timeoutSeconds: s.timeoutSeconds,
    createdAt: s.createdAt,
    startedAt: s.startedAt,
    finishedAt: s.finishedAt,
  };
}

export function pennantRoutes(engine: Engine, defaultLanguage: Language | undefined) {
  return async function (app: FastifyInstance) {
    const tags = ['pennant'];
    // runcell's own API names the same two routes by resource (at the root only).
    const own = (path: string) => (defaultLanguage === undefined ? [path] : []);
    for (const path of ['/api/submit', ...own('/api/v1/submissions')]) {
      app.post<{ Body: Static<typeof SubmitBody> }>(
        path,
        {
          schema: {
            tags,
            summary: 'Submit cells of a notebook for execution',
            body: SubmitBody,
            response: { 202: SubmitResponse, ...errorResponses },
          },
        },
        async (req, reply) => {
          const { timeout, ...body } = req.body;
          const submissionId = await engine.submit({
            ...body,
            language: body.language ?? defaultLanguage,
            timeout: timeout === undefined ? undefined : Number(timeout),
          });
          return reply.code(202).send({ message: 'Submission accepted', submissionId });
        },
      );
    }

    for (const path of ['/api/status/:submissionId', ...own('/api/v1/submissions/:submissionId')]) {
      app.get<{ Params: { submissionId: string }; Querystring: { wait?: string } }>(
        path,
        {
          schema: {
            tags,
            summary: 'Status and results of a submission; ?wait=N answers as soon as it is final',
            params: Type.Object({ submissionId: Type.String({ maxLength: 128 }) }),
            querystring: Type.Object({
              wait: Type.Optional(
                Type.String({
                  pattern: '^[0-9]+(\\.[0-9]+)?$',
                  description: `Seconds to wait, at most ${MAX_WAIT_SECONDS}`,
                }),
              ),
            }),
            response: { 200: StatusResponse, ...errorResponses },
          },
        },
        async (req) => {
          const wait = req.query.wait === undefined ? 0 : Number(req.query.wait);
          if (wait > MAX_WAIT_SECONDS) {
            throw new RuncellError('REQUEST_INVALID', `wait must be at most ${MAX_WAIT_SECONDS} seconds`);
          }
          const submission = await engine.waitFinal(req.params.submissionId, wait);
          if (!submission)
            throw new RuncellError('SUBMISSION_NOT_FOUND', `no submission has id ${req.params.submissionId}`);
          return toStatus(submission);
        },
      );
    }

    app.post<{ Params: { notebookId: string } }>(
      '/api/reset/:notebookId',
      {
        schema: {
          tags,
          summary: "Reset a notebook's context (idempotent; cancels its queued submissions)",
          params: Type.Object({ notebookId: Id('Notebook id') }),
          response: { 200: Type.Object({ message: Type.String() }), ...errorResponses },
        },
      },
      async (req) => {
        await engine.reset(req.params.notebookId);
        return { message: `Context of notebook ${req.params.notebookId} has been reset` };
      },
    );

    const notebookStatus = {
      schema: {
        tags,
        summary: 'Whether a live kernel holds the notebook context',
        params: Type.Object({ notebookId: Id('Notebook id') }),
        response: {
          200: Type.Object({ notebookId: Type.String(), active: Type.Boolean() }),
          ...errorResponses,
        },
      },
    };
    for (const path of ['/notebookstatus/:notebookId', '/api/notebookstatus/:notebookId']) {
      app.get<{ Params: { notebookId: string } }>(path, notebookStatus, async (req) => {
        const { known, active } = await engine.notebookStatus(req.params.notebookId);
        if (!known)
          throw new RuncellError(
            'NOTEBOOK_NOT_FOUND',
            `notebook ${req.params.notebookId} has never been seen`,
          );
        return { notebookId: req.params.notebookId, active };
      });
    }

    const format = {
      schema: {
        tags,
        summary: "Format Python code in black's style",
        body: Type.Object({ code: Type.String() }),
        response: { 200: Type.Object({ formatted_code: Type.String() }), ...errorResponses },
      },
    };
    for (const path of ['/format-python', '/api/format-python']) {
      app.post<{ Body: { code: string } }>(path, format, async (req) => {
        const result = formatPython(req.body.code);
        if (!result.ok) throw new RuncellError('FORMAT_INVALID_PYTHON', `invalid Python: ${result.error}`);
        return { formatted_code: result.formatted };
      });
    }
  };
}
