/**
 * Flux RESTful API compatibility (seed 004): the routes and shapes of flux-restful-api, mapped
 * onto JobService. A Flux job is a shell command with a `runtime` in seconds (0: the server's
 * maximum); its record uses Flux's field names (state SCHED/RUN/INACTIVE, result
 * COMPLETED/FAILED/CANCELED/TIMEOUT, returncode, t_submit ...). Answers carry Flux's `Message`
 * beside runcell's error fields; a full queue is 429 with Retry-After.
 */
import { hostname } from 'node:os';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyError, FastifyInstance } from 'fastify';
import { errorBody, RuncellError } from '../errors.ts';
import { JobQueueFullError, type JobService } from '../jobs/job-service.ts';
import type { Job } from '../store/store.ts';
import { toRuncellError } from './error-handler.ts';

export interface FluxRoutesOptions {
  /**
   * Stops the server gracefully (running work ends recorded as server-shutdown). Without it,
   * POST /service/stop answers 403: stopping is off unless configured.
   */
  stop?: () => unknown;
}

const SubmitBody = Type.Object({
  command: Type.Optional(
    Type.String({ description: 'The command to run (with /bin/bash -c, in a fresh sandbox); required' }),
  ),
  runtime: Type.Optional(
    Type.Number({ minimum: 0, description: "Most seconds it may run; 0 (default): the server's maximum" }),
  ),
});

const JobParams = Type.Object({ uid: Type.String({ minLength: 1, maxLength: 128 }) });

const FLUX_STATE: Record<Job['state'], string> = {
  queued: 'SCHED',
  running: 'RUN',
  completed: 'INACTIVE',
  failed: 'INACTIVE',
  cancelled: 'INACTIVE',
};

const seconds = (iso: string | null) => (iso === null ? 0 : new Date(iso).getTime() / 1000);

function fluxResult(job: Job): string {
  if (job.state === 'completed') return 'COMPLETED';
  if (job.state === 'cancelled') return 'CANCELED';
  if (job.state === 'failed') return job.reason === 'timeout' ? 'TIMEOUT' : 'FAILED';
  return '';
}

/** Flux's exception: a cancel or a timeout is one; a command that merely exits non-zero is not. */
function fluxException(job: Job) {
  const type =
    job.state === 'cancelled' ? 'cancel' : job.state === 'failed' && job.reason !== null ? job.reason : null;
  return {
    occurred: type !== null,
    severity: type === null ? -1 : 0,
    type: type ?? '',
    note: type ? (job.message ?? '') : '',
  };
}

/** The job as flux-restful-api's GET /jobs/{id} describes it, plus its output. */
export function fluxJob(job: Job) {
  const node = hostname();
  const final = job.finishedAt !== null;
  const exitCode = job.exitCode ?? null;
  return {
    id: job.id,
    userid: 0,
    urgency: 16,
    priority: 16,
    name: job.command?.trim().split(/\s+/)[0] ?? '',
    ntasks: 1,
    nnodes: 1,
    ranks: '0',
    nodelist: node,
    state: FLUX_STATE[job.state],
    result: fluxResult(job),
    success: job.state === 'completed',
    returncode: exitCode ?? '',
    waitstatus: exitCode === null ? '' : exitCode * 256,
    exception: fluxException(job),
    duration: job.limits.wallMs / 1000,
    runtime: job.startedAt === null ? 0 : (job.wallMs ?? 0) / 1000,
    t_submit: seconds(job.createdAt),
    t_run: seconds(job.startedAt),
    t_inactive: final ? seconds(job.finishedAt) : 0,
    expiration: job.startedAt === null ? 0 : seconds(job.startedAt) + job.limits.wallMs / 1000,
    stdout: job.stdout,
    stderr: job.stderr,
  };
}

const message = (text: string) => ({ Message: text });

const STOP_DISABLED = 'service stop is disabled on this server (RUNCELL_FLUX_SERVICE_STOP=true enables it)';

export function fluxRoutes(jobs: JobService, options: FluxRoutesOptions = {}) {
  return async function (app: FastifyInstance) {
    const tags = ['flux'];
    // Flux clients read `Message`; runcell clients read `error` and `code`: both are there.
    app.setErrorHandler((err: FastifyError, req, reply) => {
      const error = toRuncellError(err);
      if (error.statusCode >= 500) req.log.error({ err }, 'request failed');
      if (err instanceof JobQueueFullError) void reply.header('retry-after', String(err.retryAfterSeconds));
      return reply.code(error.statusCode).send({ ...message(error.message), ...errorBody(error) });
    });

    const find = async (uid: string) => {
      const job = await jobs.get(uid);
      if (!job) throw new RuncellError('JOB_NOT_FOUND', `no job has id ${uid}`);
      return job;
    };

    app.post<{ Body: Static<typeof SubmitBody> }>(
      '/jobs/submit',
      { schema: { tags, summary: 'Flux: submit a command', body: SubmitBody } },
      async (req) => {
        const command = req.body.command ?? '';
        if (command.trim() === '') {
          throw new RuncellError('REQUEST_INVALID', "'command' is required.");
        }
        const job = await jobs.submit({ command, runtime: req.body.runtime ?? 0 });
        return { ...message('Job submit.'), id: job.id };
      },
    );

    app.get('/jobs', { schema: { tags, summary: 'Flux: the jobs, newest first' } }, async () => {
      const { jobs: page } = await jobs.list({ limit: 200 });
      return { jobs: page.filter((job) => job.kind === 'command').map(fluxJob) };
    });

    app.get<{ Params: Static<typeof JobParams> }>(
      '/jobs/:uid',
      { schema: { tags, summary: 'Flux: one job', params: JobParams } },
      async (req) => fluxJob(await find(req.params.uid)),
    );

    app.post<{ Params: Static<typeof JobParams> }>(
      '/jobs/:uid/cancel',
      { schema: { tags, summary: 'Flux: cancel a job (its whole process tree)', params: JobParams } },
      async (req) => {
        await find(req.params.uid);
        await jobs.cancel(req.params.uid);
        return message('Job is requested to cancel.');
      },
    );

    app.get('/nodes', { schema: { tags, summary: 'Flux: the nodes that run jobs' } }, async () => ({
      nodes: [hostname()],
    }));

    app.post(
      '/service/stop',
      { schema: { tags, summary: 'Flux: stop the server gracefully' } },
      async (req, reply) => {
        const { stop } = options;
        if (!stop) {
          return reply.code(403).send({
            ...message(STOP_DISABLED),
            error: STOP_DISABLED,
            code: 'RUNCELL_ERR_SERVICE_STOP_DISABLED', // see src/errors.ts
            statusCode: 403,
          });
        }
        req.log.warn('stop requested through the Flux API');
        // After the answer is out: stopping closes this server.
        reply.raw.once(
          'finish',
          () =>
            void Promise.resolve()
              .then(stop)
              .catch((err) => req.log.error({ err }, 'stop failed')),
        );
        return message('Service is stopping.');
      },
    );
  };
}
