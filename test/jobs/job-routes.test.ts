/**
 * The jobs API over HTTP (a bare Fastify app with the job routes and runcell's error handling),
 * admission, persistence across a restart, and the finished-job event hook.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installErrorHandling } from '../../src/api/error-handler.ts';
import { jobRoutes } from '../../src/api/job-routes.ts';
import { ErrorResponse } from '../../src/api/schemas.ts';
import type { Job } from '../../src/store/store.ts';
import { startJobs } from './helpers.ts';

const UIDS = { uidBase: 62506, uidCount: 2 };

let t: Awaited<ReturnType<typeof startJobs>>;
let app: FastifyInstance;

async function buildApp(jobs: typeof t.jobs): Promise<FastifyInstance> {
  const app = Fastify({ ajv: { customOptions: { coerceTypes: false, allErrors: false } } });
  app.addSchema(ErrorResponse);
  installErrorHandling(app);
  await app.register(jobRoutes(jobs, { kernelCount: () => 3 }));
  return app;
}

beforeAll(async () => {
  // One job at a time and one waiting: admission is easy to fill.
  t = await startJobs(UIDS, { concurrency: 1, queueSize: 1 });
  app = await buildApp(t.jobs);
}, 60_000);
afterAll(async () => {
  await app?.close();
  await t?.close();
});

const post = (payload: object, query = '') =>
  app.inject({ method: 'POST', url: `/api/v1/jobs${query}`, payload });
const get = (url: string) => app.inject({ method: 'GET', url });

async function waitRunning(id: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await t.jobs.get(id))!.state === 'running') return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('never started');
}

describe('jobs API', () => {
  it('accepts a program with 202, and answers its result on GET ?wait', async () => {
    const res = await post({ language: 'python', code: 'print(6 * 7)' });
    expect(res.statusCode).toBe(202);
    const { id, state } = res.json();
    expect(state).toBe('queued');
    const done = await get(`/api/v1/jobs/${id}?wait=30`);
    expect(done.statusCode).toBe(200);
    expect(done.json()).toMatchObject({
      id,
      state: 'completed',
      stdout: '42\n',
      exitCode: 0,
      language: 'python',
    });
  });

  it('answers the final job on POST ?wait, with its resource use', async () => {
    const res = await post({ command: 'echo out; echo err >&2; exit 4', runtime: 5 }, '?wait=30');
    expect(res.statusCode).toBe(202);
    const job = res.json() as Job;
    expect(job).toMatchObject({
      state: 'failed',
      kind: 'command',
      stdout: 'out\n',
      stderr: 'err\n',
      exitCode: 4,
    });
    expect(job.limits.wallMs).toBe(5000);
    for (const key of ['cpuMs', 'wallMs', 'peakMemoryBytes'] as const) expect(job[key]).toBeGreaterThan(0);
  });

  it('reports a compile error with the compiler output', async () => {
    const res = await post({ language: 'c', code: 'int main(void) { return nope; }' }, '?wait=30');
    expect(res.json()).toMatchObject({ state: 'failed', reason: 'compile-error', compile: { exitCode: 1 } });
    expect(res.json().compile.stderr).toMatch(/nope. undeclared/);
  });

  it('answers bad input with a clear 400', async () => {
    const cases: [object, RegExp][] = [
      [{}, /either a language .* or a command|give a language/],
      [{ language: 'python', code: 1 }, /code/],
      [{ language: 'python', code: 'x', limits: { wallMs: -1 } }, /wallMs/],
      [{ language: 'python', code: 'x', env: { 'BAD NAME': 'x' } }, /not a valid variable name/],
      [{ language: 'klingon', code: 'x' }, /not available/],
      [{ command: 'ls', args: ['x'] }, /command job takes no args/],
    ];
    for (const [body, message] of cases) {
      const res = await post(body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json().error).toMatch(message);
      expect(res.json().code).toMatch(/^RUNCELL_ERR_(REQUEST_INVALID|LANGUAGE_UNSUPPORTED)$/);
    }
    expect((await get('/api/v1/jobs/x?wait=31')).statusCode).toBe(400);
    expect((await get('/api/v1/jobs?cursor=garbage')).json().error).toMatch(/cursor/);
    expect((await get('/api/v1/jobs?since=yesterday')).json().error).toMatch(/since/);
  });

  it('answers 404 for a job that does not exist', async () => {
    for (const res of [
      await get('/api/v1/jobs/nope'),
      await app.inject({ method: 'POST', url: '/api/v1/jobs/nope/cancel' }),
    ]) {
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('RUNCELL_ERR_JOB_NOT_FOUND');
    }
  });

  it('refuses with 429 and Retry-After when every slot and queue place is taken', async () => {
    const running = (await post({ command: 'sleep 30' })).json();
    const queued = (await post({ command: 'sleep 30' })).json();
    const refused = await post({ command: 'echo no room' });
    expect(refused.statusCode).toBe(429);
    expect(refused.json().code).toBe('RUNCELL_ERR_JOB_QUEUE_FULL');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const nodes = (await get('/api/v1/nodes')).json().nodes;
    expect(nodes[0].jobs).toEqual({ running: 1, queued: 1 });
    // Cancelling over HTTP frees the places, and answers the final job.
    await waitRunning(running.id);
    const cancelled = await app.inject({ method: 'POST', url: `/api/v1/jobs/${running.id}/cancel` });
    expect(cancelled.json()).toMatchObject({ state: 'cancelled', reason: 'cancelled' });
    await t.jobs.cancel(queued.id);
    expect((await post({ command: 'echo room again' }, '?wait=30')).json().stdout).toBe('room again\n');
  });

  it('lists newest first with filters, a page at a time', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await post({ command: `echo ${i}`, ref: 'paging' }, '?wait=30')).json().id);
    }
    const seen: string[] = [];
    let url = '/api/v1/jobs?ref=paging&limit=2';
    for (let page = 0; page < 5; page++) {
      const body = (await get(url)).json();
      expect(body.jobs.length).toBeLessThanOrEqual(2);
      seen.push(...body.jobs.map((j: Job) => j.id));
      expect(body.jobs[0]).not.toHaveProperty('stdout'); // lists carry no output
      if (!body.nextCursor) break;
      url = `/api/v1/jobs?ref=paging&limit=2&cursor=${body.nextCursor}`;
    }
    expect(seen).toEqual([...ids].reverse());

    const python = (await get('/api/v1/jobs?language=python')).json().jobs;
    expect(python.length).toBeGreaterThan(0);
    expect(python.every((j: Job) => j.language === 'python')).toBe(true);
    const cancelled = (await get('/api/v1/jobs?state=cancelled')).json().jobs;
    expect(cancelled.every((j: Job) => j.state === 'cancelled')).toBe(true);
    expect(
      (await get(`/api/v1/jobs?since=${new Date(Date.now() + 60_000).toISOString()}`)).json().jobs,
    ).toEqual([]);
    expect((await get('/api/v1/jobs?state=bogus')).statusCode).toBe(400);
  });

  it('describes this machine on /api/v1/nodes', async () => {
    const res = await get('/api/v1/nodes');
    expect(res.statusCode).toBe(200);
    const [node] = res.json().nodes;
    expect(node).toMatchObject({ kernels: 3, jobs: { running: 0, queued: 0 } });
    expect(node.cores).toBeGreaterThan(0);
    expect(node.memoryBytes).toBeGreaterThan(0);
    expect(node.limits).toMatchObject({ jobConcurrency: 1, jobQueueSize: 1, job: { wallMs: 60_000 } });
    expect(node.languages).toContainEqual({ language: 'python', version: expect.any(String) });
  });

  it('tells onFinished listeners about each job once it is stored', async () => {
    const seen: Job[] = [];
    const off = t.jobs.onFinished((job) => seen.push(job));
    const id = (await post({ command: 'echo hook' })).json().id;
    await t.jobs.wait(id, 30);
    off();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ id, state: 'completed', stdout: 'hook\n' });
    expect((await t.store.getJob(id))!.state).toBe('completed');
  });
});

// These start services of their own on the file's first uid: the one above is idle meanwhile.
describe('jobs across a restart', () => {
  it('keeps finished jobs, and fails those a stopped server left running (server-restart)', async () => {
    const first = await startJobs({ uidBase: UIDS.uidBase, uidCount: 1 });
    const done = await first.jobs.submit({ command: 'echo kept' });
    await first.jobs.wait(done.id, 30);
    const running = await first.jobs.submit({ command: 'sleep 60' });
    for (let i = 0; i < 200 && (await first.store.getJob(running.id))!.state !== 'running'; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    // The server dies: its store holds the job as running, and nothing more gets written.
    await first.store.close();
    await first.close();

    const second = await startJobs({ uidBase: UIDS.uidBase, uidCount: 1 }, {}, first.dir);
    try {
      expect(await second.jobs.get(done.id)).toMatchObject({ state: 'completed', stdout: 'kept\n' });
      expect(await second.jobs.get(running.id)).toMatchObject({ state: 'failed', reason: 'server-restart' });
    } finally {
      await second.close();
    }
  });

  it('ends queued and running jobs as server-shutdown on close', async () => {
    const s = await startJobs({ uidBase: UIDS.uidBase, uidCount: 1 }, { concurrency: 1 });
    const running = await s.jobs.submit({ command: 'sleep 60' });
    const queued = await s.jobs.submit({ command: 'sleep 60' });
    await s.jobs.close();
    for (const id of [running.id, queued.id]) {
      expect(await s.store.getJob(id)).toMatchObject({ state: 'failed', reason: 'server-shutdown' });
    }
    await expect(s.jobs.submit({ command: 'true' })).rejects.toThrow(/shutting down/);
    await s.close();
  });
});
