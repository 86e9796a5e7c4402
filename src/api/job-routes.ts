/**
 * runcell's jobs API: one-shot programs and shell commands (POST /api/v1/jobs), their state and
 * results (GET, with ?wait=N), listing with filters and a cursor, cancellation, and the machines
 * that run work (GET /api/v1/nodes). A full queue answers 429 with Retry-After.
 */
import { availableParallelism, freemem, hostname, totalmem } from 'node:os';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { RuncellError } from '../errors.ts';
import { JobQueueFullError, type JobService } from '../jobs/job-service.ts';
import type { Job } from '../store/store.ts';
import { errorResponses } from './schemas.ts';

const MAX_WAIT_SECONDS = 30;

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const LIMIT_FIELDS = {
  wallMs: Type.Integer({ minimum: 1, description: 'Wall-clock time, ms' }),
  cpuMs: Type.Integer({ minimum: 1, description: 'CPU time of all processes, ms (default: the wall limit)' }),
  memoryBytes: Type.Integer({ minimum: 1, description: 'Memory of the whole process tree, bytes' }),
  processes: Type.Integer({ minimum: 1, description: 'Processes and threads at once' }),
  outputBytes: Type.Integer({
    minimum: 1,
    description: 'Bytes kept of stdout, and of stderr; more ends the job',
  }),
};

const LimitsInput = Type.Partial(Type.Object(LIMIT_FIELDS), {
  description: "Each at most the server's maximum (a higher value is lowered to it)",
});

export const SubmitJobBody = Type.Object({
  language: Type.Optional(
    Type.String({
      maxLength: 64,
      description: 'A program: python, javascript, typescript, java, c, cpp, rust, bash; or `java@17`',
    }),
  ),
  version: Type.Optional(Type.String({ maxLength: 32, description: 'Version prefix, e.g. 17' })),
  code: Type.Optional(Type.String({ description: 'The program, as one file (named for the language)' })),
  files: Type.Optional(
    Type.Array(
      Type.Object({
        name: Type.String({ minLength: 1, maxLength: 1024, description: 'Relative path in the workspace' }),
        content: Type.String(),
        encoding: Type.Optional(Type.Union([Type.Literal('utf8'), Type.Literal('base64')])),
      }),
      { description: 'The program as several files (instead of code)' },
    ),
  ),
  entry: Type.Optional(
    Type.String({ maxLength: 1024, description: 'The file to run among files (default: the first)' }),
  ),
  command: Type.Optional(
    Type.String({ description: 'A shell command instead of a program: run with /bin/bash -c' }),
  ),
  runtime: Type.Optional(
    Type.Number({ minimum: 0, description: 'Most seconds the job may run; 0: the server maximum' }),
  ),
  stdin: Type.Optional(Type.String({ description: "The program's standard input" })),
  args: Type.Optional(Type.Array(Type.String(), { description: 'Arguments of the program' })),
  env: Type.Optional(
    Type.Record(Type.String(), Type.String(), {
      description:
        'Environment variables beyond the sandbox defaults (not LD_*, NODE_OPTIONS, JAVA_TOOL_OPTIONS)',
    }),
  ),
  limits: Type.Optional(LimitsInput),
  ref: Type.Optional(
    Type.String({ minLength: 1, maxLength: 256, description: "The client's own reference" }),
  ),
});

const Reason = Nullable(
  Type.String({
    description:
      'Why it ended so: timeout, cpu-time, memory, output-limit, pids, cancelled, compile-error, server-restart, server-shutdown, sandbox-error',
  }),
);

const STEP_FIELDS = {
  stdout: Type.String(),
  stderr: Type.String(),
  stdoutTruncated: Type.Boolean(),
  stderrTruncated: Type.Boolean(),
  exitCode: Nullable(Type.Integer()),
  signal: Nullable(Type.String({ description: 'The signal that ended the program' })),
  cpuMs: Nullable(Type.Number({ description: 'CPU time of all its processes (cgroup)' })),
  wallMs: Type.Number(),
  peakMemoryBytes: Nullable(Type.Number({ description: 'Most memory the process tree held (cgroup)' })),
  reason: Reason,
};

const SUMMARY_FIELDS = {
  id: Type.String(),
  ref: Nullable(Type.String()),
  kind: Type.Union([Type.Literal('program'), Type.Literal('command')]),
  language: Nullable(Type.String()),
  version: Nullable(Type.String()),
  command: Nullable(Type.String()),
  state: Type.Union(['queued', 'running', 'completed', 'failed', 'cancelled'].map((s) => Type.Literal(s))),
  message: Nullable(Type.String({ description: 'Why it ended so, for people' })),
  limits: Type.Object(LIMIT_FIELDS),
  createdAt: Type.String(),
  startedAt: Nullable(Type.String()),
  finishedAt: Nullable(Type.String()),
  ...STEP_FIELDS,
};

export const JobSchema = Type.Object({
  ...SUMMARY_FIELDS,
  compile: Nullable(Type.Object(STEP_FIELDS, { description: 'The compilation, for compiled languages' })),
});

/** In lists: no output nor compilation (a page could be very large); GET the job for them. */
const { stdout: _o, stderr: _e, ...LISTED_FIELDS } = SUMMARY_FIELDS;
const JobListed = Type.Object(LISTED_FIELDS);

const Wait = Type.Object({
  wait: Type.Optional(
    Type.String({
      pattern: '^[0-9]+(\\.[0-9]+)?$',
      description: `Seconds to wait for the job to be final, at most ${MAX_WAIT_SECONDS}`,
    }),
  ),
});

const JobParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });

const Node = Type.Object({
  id: Type.String(),
  hostname: Type.String(),
  cores: Type.Integer(),
  memoryBytes: Type.Number(),
  freeMemoryBytes: Type.Number(),
  kernels: Type.Integer({ description: 'Live notebook kernels' }),
  jobs: Type.Object({ running: Type.Integer(), queued: Type.Integer() }),
  limits: Type.Object({
    jobConcurrency: Type.Integer(),
    jobQueueSize: Type.Integer(),
    job: Type.Object(LIMIT_FIELDS, { description: 'The most a job may ask for' }),
  }),
  languages: Type.Array(Type.Object({ language: Type.String(), version: Type.String() })),
});

const jobResponses = { ...errorResponses, 429: Type.Ref('Error') };

function waitSeconds(wait: string | undefined): number {
  const seconds = wait === undefined ? 0 : Number(wait);
  if (seconds > MAX_WAIT_SECONDS) {
    throw new RuncellError('REQUEST_INVALID', `wait must be at most ${MAX_WAIT_SECONDS} seconds`);
  }
  return seconds;
}

const notFound = (id: string) => new RuncellError('JOB_NOT_FOUND', `no job has id ${id}`);

export interface NodeInfo {
  /** Live notebook kernels on this machine. */
  kernelCount: () => number;
}

export function jobRoutes(jobs: JobService, node: NodeInfo) {
  return async function (app: FastifyInstance) {
    const tags = ['jobs'];
    // The queue-full answer says when to come back (the error handler sends the body).
    app.addHook('onError', async (_req, reply, err) => {
      if (err instanceof JobQueueFullError) void reply.header('retry-after', String(err.retryAfterSeconds));
    });

    app.post<{ Body: Static<typeof SubmitJobBody>; Querystring: Static<typeof Wait> }>(
      '/api/v1/jobs',
      {
        schema: {
          tags,
          summary: 'Run a program (compiled first if need be) or a shell command in a fresh sandbox',
          description: `Answers 202 with the job; with ?wait=N, once it is final or N seconds passed.`,
          body: SubmitJobBody,
          querystring: Wait,
          response: { 202: JobSchema, ...jobResponses },
        },
      },
      async (req, reply) => {
        const wait = waitSeconds(req.query.wait);
        const job = await jobs.submit(req.body);
        const answer = wait > 0 ? ((await jobs.wait(job.id, wait)) ?? job) : job;
        return reply.code(202).send(answer);
      },
    );

    app.get<{
      Querystring: {
        state?: Job['state'];
        language?: string;
        since?: string;
        ref?: string;
        cursor?: string;
        limit?: string;
      };
    }>(
      '/api/v1/jobs',
      {
        schema: {
          tags,
          summary: 'Jobs, newest first, a page at a time (without their output)',
          querystring: Type.Object({
            state: Type.Optional(SUMMARY_FIELDS.state),
            language: Type.Optional(Type.String({ maxLength: 64 })),
            since: Type.Optional(
              Type.String({ maxLength: 64, description: 'Created at or after (ISO 8601)' }),
            ),
            ref: Type.Optional(Type.String({ maxLength: 256 })),
            cursor: Type.Optional(
              Type.String({ maxLength: 1024, description: 'nextCursor of the previous page' }),
            ),
            limit: Type.Optional(
              Type.String({ pattern: '^[0-9]{1,3}$', description: 'Jobs per page, 1-200 (default 50)' }),
            ),
          }),
          response: {
            200: Type.Object({ jobs: Type.Array(JobListed), nextCursor: Nullable(Type.String()) }),
            ...jobResponses,
          },
        },
      },
      async (req) => {
        const { limit, ...query } = req.query;
        const page = await jobs.list({ ...query, limit: limit === undefined ? undefined : Number(limit) });
        return {
          jobs: page.jobs.map(({ stdout: _o, stderr: _e, compile: _c, ...listed }) => listed),
          nextCursor: page.nextCursor,
        };
      },
    );

    app.get<{ Params: Static<typeof JobParams>; Querystring: Static<typeof Wait> }>(
      '/api/v1/jobs/:id',
      {
        schema: {
          tags,
          summary: 'A job with its output and resource use; ?wait=N answers as soon as it is final',
          params: JobParams,
          querystring: Wait,
          response: { 200: JobSchema, ...jobResponses },
        },
      },
      async (req) => {
        const job = await jobs.wait(req.params.id, waitSeconds(req.query.wait));
        if (!job) throw notFound(req.params.id);
        return job;
      },
    );

    app.post<{ Params: Static<typeof JobParams> }>(
      '/api/v1/jobs/:id/cancel',
      {
        schema: {
          tags,
          summary: 'End a queued or running job and its whole process tree; answers the final job',
          params: JobParams,
          response: { 200: JobSchema, ...jobResponses },
        },
      },
      async (req) => {
        const job = await jobs.cancel(req.params.id);
        if (!job) throw notFound(req.params.id);
        return job;
      },
    );

    app.get(
      '/api/v1/nodes',
      {
        schema: {
          tags,
          summary: 'The machines that run work (this one, in embedded mode)',
          response: { 200: Type.Object({ nodes: Type.Array(Node) }), ...jobResponses },
        },
      },
      async () => {
        const stats = jobs.stats();
        const name = hostname();
        return {
          nodes: [
            {
              id: name,
              hostname: name,
              cores: availableParallelism(),
              memoryBytes: totalmem(),
              freeMemoryBytes: freemem(),
              kernels: node.kernelCount(),
              jobs: { running: stats.running, queued: stats.queued },
              limits: {
                jobConcurrency: stats.concurrency,
                jobQueueSize: stats.queueSize,
                job: jobs.maxLimits,
              },
              languages: jobs.toolchains.map((t) => ({ language: t.language, version: t.version })),
            },
          ],
        };
      },
    );
  };
}
