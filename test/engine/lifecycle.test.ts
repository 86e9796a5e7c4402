/** Ordering, parallelism, reset, and what survives a restart. */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { finalStatus, notebookId, run, startApp, submit, testConfig } from '../helpers.ts';

let app: FastifyInstance;
beforeAll(async () => {
  app = await startApp({ maxConcurrentNotebooks: 4 });
});
afterAll(() => app.close());

describe('scheduling', () => {
  it('runs submissions of one notebook one at a time, in arrival order', async () => {
    const nb = notebookId();
    await run(app, nb, ['order = []']);
    const ids = [];
    for (let i = 0; i < 5; i++) {
      ids.push(
        await submit(app, {
          notebookId: nb,
          cells: [{ cellId: `s${i}`, code: `import time; time.sleep(0.05); order.append(${i})` }],
        }),
      );
    }
    for (const id of ids) expect((await finalStatus(app, id)).status).toBe('success');
    expect((await run(app, nb, ['order'])).results[0]!.output).toBe('[0, 1, 2, 3, 4]');
  });

  it('runs different notebooks in parallel', async () => {
    const slow = await submit(app, {
      notebookId: notebookId(),
      cells: [{ cellId: 'a', code: 'import time; time.sleep(3)' }],
    });
    const fast = await run(app, notebookId(), ['print("quick")']);
    expect(fast.status).toBe('success');
    const res = (await app.inject(`/api/status/${slow}`)).json();
    expect(res.status).toBe('pending');
    expect((await finalStatus(app, slow)).status).toBe('success');
  });
});

describe('reset', () => {
  it('gives the next cell a fresh context', async () => {
    const nb = notebookId();
    await run(app, nb, ['secret = 1']);
    await app.inject({ method: 'POST', url: `/api/reset/${nb}` });
    const status = await run(app, nb, ['secret']);
    expect(status.results[0]!.output).toMatch(/NameError/);
    expect(status.results[0]!.contextLost).toBe(false); // asked for, not lost
  });

  it('cancels queued submissions into a readable final state, and stops the running one', async () => {
    const nb = notebookId();
    const running = await submit(app, {
      notebookId: nb,
      cells: [
        { cellId: 'a', code: 'import time; time.sleep(30)' },
        { cellId: 'b', code: '1' },
      ],
    });
    const queued = await submit(app, { notebookId: nb, cells: [{ cellId: 'q', code: 'print("never")' }] });
    // Let the first one start: its kernel is live once the cell runs.
    for (let i = 0; i < 200 && !(await app.inject(`/notebookstatus/${nb}`)).json().active; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    const reset = await app.inject({ method: 'POST', url: `/api/reset/${nb}` });
    expect(reset.statusCode).toBe(200);
    const q = await finalStatus(app, queued);
    expect(q).toMatchObject({ status: 'error', state: 'cancelled', cellsExecuted: [], results: [] });
    expect(q.reason).toMatch(/reset/);
    const r = await finalStatus(app, running);
    expect(r).toMatchObject({ status: 'error', state: 'cancelled', cellsExecuted: ['a'] });
    expect(r.results[0]!.type).toBe('critical');
    expect(r.results[0]!.output).toMatch(/reset/);
  });
});

describe('durability', () => {
  it('ends submissions left pending or running by a dead server in error, with a critical result', async () => {
    const config = testConfig();
    // What a crashed server leaves behind: one running (one cell done), one pending.
    const { mkdirSync } = await import('node:fs');
    mkdirSync(config.dataDir, { recursive: true });
    const store = new SqliteStore(join(config.dataDir, 'runcell.db'));
    await store.init();
    const cells = [
      { cellId: 'a', code: '1', language: 'python' as const },
      { cellId: 'b', code: '2', language: 'python' as const },
    ];
    const at = new Date().toISOString();
    await store.createSubmission({
      id: 'crashed-running',
      notebookId: 'nb',
      cells,
      timeoutSeconds: 5,
      stopOnError: true,
      createdAt: at,
    });
    const { criticalResult } = await import('../../src/engine/cell-result.ts');
    // Its first result marks it running (as the engine writes it).
    await store.addResult(
      'crashed-running',
      0,
      { ...criticalResult('a', 'python', 'x', true), type: 'output', output: '1' },
      { startedAt: at },
    );
    await store.createSubmission({
      id: 'crashed-pending',
      notebookId: 'nb',
      cells,
      timeoutSeconds: 5,
      stopOnError: true,
      createdAt: at,
    });
    await store.close();

    const restarted = await buildApp(config);
    try {
      const running = (await restarted.inject('/api/status/crashed-running')).json();
      expect(running).toMatchObject({ status: 'error', cellsExecuted: ['a'] });
      expect(running.results.map((r: { cellId: string; type: string }) => [r.cellId, r.type])).toEqual([
        ['a', 'output'],
        ['b', 'critical'],
      ]);
      expect(running.results[1].output).toMatch(/restarted/);
      const pending = (await restarted.inject('/api/status/crashed-pending')).json();
      expect(pending).toMatchObject({ status: 'error', cellsExecuted: [] });
      expect(pending.results[0]).toMatchObject({ cellId: 'a', type: 'critical' });
    } finally {
      await restarted.close();
    }
  });

  it('records running and queued work as final when the server shuts down', async () => {
    const config = testConfig();
    const first = await buildApp(config);
    const nb = notebookId();
    const running = await submit(first, {
      notebookId: nb,
      cells: [{ cellId: 'a', code: 'import time; time.sleep(30)' }],
    });
    const queued = await submit(first, { notebookId: nb, cells: [{ cellId: 'b', code: '1' }] });
    await new Promise((r) => setTimeout(r, 500));
    await first.close();
    const second = await buildApp(config);
    try {
      for (const id of [running, queued]) {
        const body = (await second.inject(`/api/status/${id}`)).json();
        expect(body.status).toBe('error');
        expect(body.results.at(-1).type).toBe('critical');
        expect(body.results.at(-1).output).toMatch(/shut down|shutting down/);
      }
    } finally {
      await second.close();
    }
  });
});
