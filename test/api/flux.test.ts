/**
 * The Flux RESTful API routes (seed 004) over a real JobService: submit {command, runtime}, list,
 * get, cancel, nodes, the 429 of a full queue, and /service/stop (off unless configured).
 */
import { hostname } from 'node:os';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installErrorHandling } from '../../src/api/error-handler.ts';
import { fluxRoutes } from '../../src/api/flux-routes.ts';
import { errorCode } from '../../src/errors.ts';
import { startJobs } from '../jobs/helpers.ts';

const UIDS = { uidBase: 62800, uidCount: 4 };

let t: Awaited<ReturnType<typeof startJobs>>;
let app: FastifyInstance;
let stops = 0;

async function buildApp(stop?: () => void): Promise<FastifyInstance> {
  const app = Fastify();
  installErrorHandling(app);
  await app.register(fluxRoutes(t.jobs, { stop }));
  return app;
}

beforeAll(async () => {
  // One job at a time and one waiting: the queue is easy to fill.
  t = await startJobs(UIDS, { concurrency: 1, queueSize: 1 });
  app = await buildApp();
}, 60_000);
afterAll(async () => {
  await app?.close();
  await t?.close();
});

const submit = (payload: object) => app.inject({ method: 'POST', url: '/jobs/submit', payload });
const get = (url: string) => app.inject({ method: 'GET', url });

async function finalJob(id: string) {
  await t.jobs.wait(id, 30);
  return (await get(`/jobs/${id}`)).json();
}

async function waitRunning(id: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await t.jobs.get(id))!.state === 'running') return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('never started');
}

describe('Flux RESTful API', () => {
  it('submits a command and reports it with Flux field names', async () => {
    const res = await submit({ command: 'echo hello; echo oops >&2', runtime: 5 });
    expect(res.statusCode).toBe(200);
    const { Message, id } = res.json();
    expect(Message).toBe('Job submit.');
    const job = await finalJob(id);
    expect(job).toMatchObject({
      id,
      name: 'echo',
      state: 'INACTIVE',
      result: 'COMPLETED',
      success: true,
      returncode: 0,
      waitstatus: 0,
      duration: 5,
      nnodes: 1,
      nodelist: hostname(),
      exception: { occurred: false },
      stdout: 'hello\n',
      stderr: 'oops\n',
    });
    expect(job.t_submit).toBeGreaterThan(0);
    expect(job.t_inactive).toBeGreaterThanOrEqual(job.t_run);
    expect(job.runtime).toBeGreaterThan(0);
  });

  it('reports a failing command and a timed-out one', async () => {
    const failed = await finalJob((await submit({ command: 'exit 3' })).json().id);
    expect(failed).toMatchObject({ result: 'FAILED', success: false, returncode: 3, waitstatus: 768 });
    const timedOut = await finalJob((await submit({ command: 'sleep 30', runtime: 1 })).json().id);
    expect(timedOut).toMatchObject({
      result: 'TIMEOUT',
      duration: 1,
      exception: { occurred: true, type: 'timeout' },
    });
    expect(timedOut.runtime).toBeLessThan(5);
  });

  it("answers 400 with Flux's message when the command is missing", async () => {
    for (const payload of [{ runtime: 5 }, { command: '  ' }]) {
      const res = await submit(payload);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({
        Message: "'command' is required.",
        code: errorCode('REQUEST_INVALID'),
      });
    }
  });

  it('lists the jobs and answers 404 for an unknown one', async () => {
    const id = (await submit({ command: 'true' })).json().id;
    await t.jobs.wait(id, 30);
    const res = await get('/jobs');
    expect(res.statusCode).toBe(200);
    const { jobs } = res.json();
    expect(jobs[0]).toMatchObject({ id, state: 'INACTIVE', result: 'COMPLETED' });
    expect(jobs.length).toBeGreaterThanOrEqual(4);
    const missing = await get('/jobs/no-such-job');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: errorCode('JOB_NOT_FOUND'), Message: expect.any(String) });
  });

  it('refuses with 429 and Retry-After when full, and cancels running and queued jobs', async () => {
    const running = (await submit({ command: 'sleep 30' })).json().id;
    await waitRunning(running);
    const queued = (await submit({ command: 'sleep 30' })).json().id;
    const refused = await submit({ command: 'true' });
    expect(refused.statusCode).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.json()).toMatchObject({ code: errorCode('JOB_QUEUE_FULL'), Message: expect.any(String) });

    for (const id of [queued, running]) {
      const res = await app.inject({ method: 'POST', url: `/jobs/${id}/cancel` });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ Message: 'Job is requested to cancel.' });
      expect((await get(`/jobs/${id}`)).json()).toMatchObject({
        state: 'INACTIVE',
        result: 'CANCELED',
        exception: { occurred: true, type: 'cancel' },
      });
    }
    const missing = await app.inject({ method: 'POST', url: '/jobs/no-such-job/cancel' });
    expect(missing.statusCode).toBe(404);
  });

  it('lists this machine as the one node', async () => {
    const res = await get('/nodes');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ nodes: [hostname()] });
  });

  it('refuses /service/stop unless a stop is configured', async () => {
    const res = await app.inject({ method: 'POST', url: '/service/stop' });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({
      code: 'RUNCELL_ERR_SERVICE_STOP_DISABLED',
      Message: expect.any(String),
    });
  });

  it('stops the service, after answering, when configured', async () => {
    const stoppable = await buildApp(() => void stops++);
    try {
      const res = await stoppable.inject({ method: 'POST', url: '/service/stop' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ Message: 'Service is stopping.' });
      await new Promise((r) => setTimeout(r, 50));
      expect(stops).toBe(1);
    } finally {
      await stoppable.close();
    }
  });
});
