/**
 * buildApp(config): the whole runcell server as a Fastify instance, ready to listen (or to be
 * driven with app.inject() in tests). app.close() stops everything it started.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Type } from '@sinclair/typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { installErrorHandling } from './api/error-handler.ts';
import { documentRoutes } from './api/document-routes.ts';
import { eventRoutes } from './api/event-routes.ts';
import { fileRoutes } from './api/file-routes.ts';
import { notebookStreamRoutes } from './api/notebook-stream-routes.ts';
import websocket from '@fastify/websocket';
import { WorkspaceFiles } from './files/workspace-files.ts';
import { jobRoutes } from './api/job-routes.ts';
import { jobConcurrency, jobServiceFromConfig } from './jobs/job-config.ts';
import { attachEdcSocket, edcRoutes } from './api/edc-routes.ts';
import { fluxRoutes } from './api/flux-routes.ts';
import { formatRoutes } from './api/format-routes.ts';
import { pennantRoutes } from './api/pennant-routes.ts';
import { ErrorResponse } from './api/schemas.ts';
import type { Config } from './config.ts';
import { Engine } from './engine/engine.ts';
import { KernelManager, parsePool } from './engine/kernel-manager.ts';
import { NotebookFeed } from './engine/notebook-feed.ts';
import { NotebookDocuments } from './notebooks/notebook-documents.ts';
import { LANGUAGES } from './engine/languages.ts';
import { addOneShot, discoverKernels } from './engine/runtimes.ts';
import { errorBody, RuncellError } from './errors.ts';
import { MemoryEventBus } from './queue/memory-event-bus.ts';
import { MemoryQueue } from './queue/memory-queue.ts';
import { BwrapSandbox } from './sandbox/bwrap-sandbox.ts';
import { NoneSandbox } from './sandbox/none-sandbox.ts';
import type { Sandbox } from './sandbox/sandbox.ts';
import { sweepVolumes } from './sandbox/workspace-volume.ts';
import { ensureWorkspaceRoot, poolRootOf, resolveWorkspaceRoot } from './sandbox/workspace.ts';
import { SqliteStore } from './store/sqlite-store.ts';

const PUBLIC_PATHS = ['/healthz', '/docs', '/openapi.json'];
const WS_TOKEN_PREFIX = 'runcell.bearer.';

export async function buildApp(config: Config): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: config.logLevel },
    bodyLimit: config.bodyLimitBytes,
    // On close, drop connections still open (long-polls, streams, refused upgrades) instead of
    // waiting on them: their work is recorded as final by engine.close().
    forceCloseConnections: true,
    // Bodies are validated as sent: "3" is not a cellId of 3, and a number is not a string.
    ajv: { customOptions: { coerceTypes: false, allErrors: false } },
  });
  app.addSchema(ErrorResponse);
  installErrorHandling(app);

  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const workspaceRoot = resolveWorkspaceRoot(config.dataDir, config.workspaceDir);
  ensureWorkspaceRoot(workspaceRoot);
  if (process.getuid?.() === 0) {
    // Workspaces, pooled kernels' workspaces, and the spare volumes of both.
    const pool = poolRootOf(workspaceRoot);
    let stale = 0;
    for (const root of [workspaceRoot, pool, `${workspaceRoot}.spares`, `${pool}.spares`]) {
      stale += await sweepVolumes(root);
    }
    if (stale > 0) app.log.warn({ stale }, 'unmounted workspaces a previous run left mounted');
  }
  const sandbox: Sandbox =
    config.sandbox === 'none'
      ? new NoneSandbox()
      : new BwrapSandbox({
          uidBase: config.sandboxUidBase,
          // Claimed kernels count against maxKernels, pooled ones wait beside them, and each
          // running job holds a uid of its own.
          uidCount:
            config.maxKernels +
            [...parsePool(config.kernelPool).values()].reduce((a, b) => a + b, 0) +
            jobConcurrency(config),
          instance: createHash('sha256').update(resolve(config.dataDir)).digest('hex').slice(0, 12),
          log: app.log,
        });
  const store = new SqliteStore(join(config.dataDir, 'runcell.db'), config.dbSync);
  const queue = new MemoryQueue(config.maxConcurrentNotebooks);
  const bus = new MemoryEventBus();
  const withWorkspaces = { ...config, workspaceDir: workspaceRoot };
  const feed = new NotebookFeed(bus);
  // Drivers compiled at first use (Java's) are kept beside the workspaces, where the sandbox
  // uids can read them.
  const { runtimes, drivers } = await discoverKernels(
    config,
    join(dirname(workspaceRoot), 'drivers'),
    app.log,
  );
  if (runtimes.length === 0)
    app.log.warn('no language runtime was found: check RUNCELL_PYTHON_PATH and RUNCELL_NODE_PATH');
  const kernels = new KernelManager(sandbox, drivers, withWorkspaces, app.log, feed);
  const engine = new Engine({ config, store, queue, bus, kernels, feed, runtimes, log: app.log });
  const jobs = jobServiceFromConfig(config, { store, sandbox, log: app.log, workspaceRoot });

  app.addHook('onClose', async () => {
    await jobs.close();
    await engine.close();
    await sandbox.close();
    await Promise.all([store.close(), bus.close()]);
  });

  if (!sandbox.isolated)
    app.log.warn('sandbox "none": cells run UNCONFINED as the server user; development only');
  await sandbox.init();
  await store.init();
  await engine.init();
  await jobs.init();
  addOneShot(runtimes, jobs.toolchains);

  if (config.corsOrigins.length > 0) {
    await app.register(cors, { origin: config.corsOrigins.includes('*') ? true : config.corsOrigins });
  }
  if (config.authToken) installBearerAuth(app, config.authToken);

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'runcell',
        version: '0.1.0',
        description: 'Runs untrusted notebook code in sandboxed kernels',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get(
    '/healthz',
    {
      schema: {
        tags: ['server'],
        summary: 'Ready to run cells',
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string' },
              sandbox: { type: 'string' },
              isolated: { type: 'boolean' },
              languages: { type: 'array', items: { type: 'string' } },
              kernels: { type: 'integer' },
              pooledKernels: { type: 'integer' },
            },
          },
        },
      },
    },
    async () => ({
      status: 'ok',
      sandbox: sandbox.name,
      isolated: sandbox.isolated,
      languages: [...new Set(runtimes.map((r) => r.language))],
      kernels: kernels.liveCount,
      pooledKernels: kernels.pooledCount,
    }),
  );

  app.get(
    '/api/v1/runtimes',
    {
      schema: {
        tags: ['server'],
        summary: 'Languages this server offers, with their versions and aliases',
        response: {
          200: Type.Array(
            Type.Object({
              language: Type.String(),
              version: Type.String(),
              aliases: Type.Array(Type.String()),
              stateful: Type.Boolean(),
              oneShot: Type.Boolean(),
              kernel: Type.Optional(
                Type.String({
                  description:
                    'The kernel its cells run in: the language, or language@major beside a newer default',
                }),
              ),
            }),
          ),
        },
      },
    },
    async () => runtimes,
  );

  await app.register(pennantRoutes(engine, undefined));
  await app.register(formatRoutes());
  await app.register(websocket, {
    options: {
      maxPayload: config.bodyLimitBytes,
      // The handshake must name the subprotocol a browser offered (it carried the token).
      handleProtocols: (protocols) => [...protocols].find((p) => p.startsWith(WS_TOKEN_PREFIX)) ?? false,
    },
  });
  await app.register(eventRoutes(engine));
  await app.register(notebookStreamRoutes(engine, feed));
  await app.register(jobRoutes(jobs, { kernelCount: () => kernels.liveCount }));
  // SIGTERM runs the server's usual shutdown (server.ts): running work ends in a recorded state.
  const stop = config.fluxServiceStop ? () => void process.kill(process.pid, 'SIGTERM') : undefined;
  await app.register(fluxRoutes(jobs, { stop }));
  await app.register(edcRoutes(jobs));
  // Socket.IO answers on the raw server, before Fastify's hooks: it checks the token itself.
  attachEdcSocket(app, jobs, {
    corsOrigins: config.corsOrigins,
    allowRequest: config.authToken
      ? (req) => bearerMatches(String(req.headers.authorization ?? ''), config.authToken)
      : undefined,
  });
  await app.register(fileRoutes(engine, new WorkspaceFiles(sandbox, withWorkspaces)));
  for (const language of LANGUAGES) {
    await app.register(pennantRoutes(engine, language), { prefix: `/${language}` });
  }
  await app.register(
    documentRoutes(
      new NotebookDocuments({
        store,
        engine,
        feed,
        runtimes,
        defaultLanguage: config.defaultLanguage,
        log: app.log,
      }),
    ),
  );
  return app;
}

/** Whether an Authorization header carries the token (compared in constant time). */
function bearerMatches(header: string, token: string): boolean {
  const given = Buffer.from(header);
  const expected = Buffer.from(`Bearer ${token}`);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function installBearerAuth(app: FastifyInstance, token: string): void {
  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0]!;
    if (req.method === 'OPTIONS' || PUBLIC_PATHS.some((p) => path === p || path.startsWith(`${p}/`))) return;
    // Browsers cannot set headers on a WebSocket, but can offer subprotocols: runcell.bearer.<token>.
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .find((p) => p.startsWith(WS_TOKEN_PREFIX));
    const given = offered
      ? `Bearer ${offered.slice(WS_TOKEN_PREFIX.length)}`
      : (req.headers.authorization ?? '');
    if (!bearerMatches(given, token)) {
      const body = JSON.stringify(errorBody(new RuncellError('AUTH_REQUIRED')));
      if (req.headers.upgrade) {
        // A refused upgrade is answered on the raw socket and closed: left to Fastify, the
        // half-upgraded connection would stay open (and hold up the server's close).
        reply.hijack();
        req.raw.socket.end(
          `HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        );
        return reply;
      }
      return reply.code(401).type('application/json').send(body);
    }
  });
}
