/**
 * API EDC compatibility (seed 002): POST /execute-code `{code, language, version, uuid}` runs a
 * java or javascript program (a `public class HelloWorld` runs as sent: the jobs layer names the
 * file after it). The result is read back by uuid (GET /execute-code/:uuid, ?wait=N) and pushed,
 * as EDC's Socket.IO server does, as an event named with the uuid (attachEdcSocket).
 *
 * The uuid is kept as the job's `ref`, prefixed so that EDC's uuids and other clients' refs
 * never meet.
 */
import type { IncomingMessage } from 'node:http';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { Server } from 'socket.io';
import { RuncellError } from '../errors.ts';
import { JobQueueFullError, type JobService } from '../jobs/job-service.ts';
import type { Job } from '../store/store.ts';

const REF_PREFIX = 'edc:';
const LANGUAGES = ['java', 'javascript'];
const MAX_WAIT_SECONDS = 30;

const ExecuteBody = Type.Object({
  code: Type.String({ minLength: 1 }),
  language: Type.String({ description: 'java or javascript' }),
  version: Type.Optional(Type.String({ maxLength: 32, description: 'java: 11, 17 or 21 where installed' })),
  uuid: Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Integer()], {
    description: "The client's id of the run: the result's event name",
  }),
});

const UuidParams = Type.Object({ uuid: Type.String({ minLength: 1, maxLength: 200 }) });
const Wait = Type.Object({
  wait: Type.Optional(
    Type.String({
      pattern: '^[0-9]+(\\.[0-9]+)?$',
      description: `Seconds to wait for the result, at most ${MAX_WAIT_SECONDS}`,
    }),
  ),
});

/** The result as it is read back and pushed: the program's output and how it ended. */
export function edcResult(job: Job) {
  const compileFailed = job.reason === 'compile-error';
  return {
    uuid: job.ref!.slice(REF_PREFIX.length),
    id: job.id,
    language: job.language,
    version: job.version,
    state: job.state,
    output: job.stdout,
    // What went wrong, for people: the compiler's output for a compile error, else stderr.
    error: compileFailed ? job.compile?.stderr || job.compile?.stdout || '' : job.stderr,
    exitCode: job.exitCode,
    reason: job.reason,
    message: job.message,
    wallMs: job.wallMs,
    cpuMs: job.cpuMs,
    peakMemoryBytes: job.peakMemoryBytes,
  };
}

const isEdc = (job: Job) => job.ref?.startsWith(REF_PREFIX) === true;

async function latestByUuid(jobs: JobService, uuid: string): Promise<Job | undefined> {
  const { jobs: page } = await jobs.list({ ref: REF_PREFIX + uuid, limit: 1 });
  return page[0];
}

export function edcRoutes(jobs: JobService) {
  return async function (app: FastifyInstance) {
    const tags = ['edc'];
    app.addHook('onError', async (_req, reply, err) => {
      if (err instanceof JobQueueFullError) void reply.header('retry-after', String(err.retryAfterSeconds));
    });

    app.post<{ Body: Static<typeof ExecuteBody> }>(
      '/execute-code',
      {
        schema: {
          tags,
          summary: 'EDC: run a java or javascript program; the result comes by uuid',
          body: ExecuteBody,
        },
      },
      async (req, reply) => {
        const { code, language, version } = req.body;
        const uuid = String(req.body.uuid);
        if (!LANGUAGES.includes(language)) {
          throw new RuncellError('REQUEST_INVALID', `language must be one of ${LANGUAGES.join(', ')}`);
        }
        const job = await jobs.submit({ language, version, code, ref: REF_PREFIX + uuid });
        return reply.code(202).send({ uuid, id: job.id, state: job.state });
      },
    );

    app.get<{ Params: Static<typeof UuidParams>; Querystring: Static<typeof Wait> }>(
      '/execute-code/:uuid',
      {
        schema: {
          tags,
          summary: 'EDC: the latest run with this uuid; ?wait=N answers as soon as it is final',
          params: UuidParams,
          querystring: Wait,
        },
      },
      async (req) => {
        const wait = req.query.wait === undefined ? 0 : Number(req.query.wait);
        if (wait > MAX_WAIT_SECONDS) {
          throw new RuncellError('REQUEST_INVALID', `wait must be at most ${MAX_WAIT_SECONDS} seconds`);
        }
        const found = await latestByUuid(jobs, req.params.uuid);
        const job = found && (await jobs.wait(found.id, wait));
        if (!job) throw new RuncellError('JOB_NOT_FOUND', `no run has uuid ${req.params.uuid}`);
        return edcResult(job);
      },
    );
  };
}

/**
 * EDC's Socket.IO channel on the app's own HTTP server (path /socket.io): every finished EDC run
 * is emitted to connected clients as an event named with its uuid, which is what EDC clients
 * listen for (`socket.on(uuid, ...)`). Like EDC's, it is a broadcast: a client that knows a uuid
 * sees its result, so clients should use unguessable uuids. Closed with the app.
 */
export interface EdcSocketOptions {
  /**
   * Whether a connection may open. Socket.IO answers on the raw HTTP server, before Fastify's
   * hooks: with auth configured, this must check the credentials itself.
   */
  allowRequest?: (req: IncomingMessage) => boolean;
  corsOrigins?: string[];
}

export function attachEdcSocket(
  app: FastifyInstance,
  jobs: JobService,
  options: EdcSocketOptions = {},
): Server {
  const { allowRequest, corsOrigins = [] } = options;
  const io = new Server(app.server, {
    serveClient: false,
    cors: corsOrigins.length ? { origin: corsOrigins.includes('*') ? true : corsOrigins } : undefined,
    allowRequest: allowRequest && ((req, callback) => callback(null, allowRequest(req))),
  });
  const unsubscribe = jobs.onFinished((job) => {
    if (isEdc(job)) io.emit(job.ref!.slice(REF_PREFIX.length), edcResult(job));
  });
  // Before Fastify closes the HTTP server (io.close() would close it too): open sockets would hold it.
  app.addHook('preClose', async () => {
    unsubscribe();
    io.disconnectSockets(true);
    io.engine.close();
  });
  return io;
}
