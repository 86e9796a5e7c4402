/**
 * A submission's cell starts while its creation is being committed (the kernel runs during the
 * fsync), but nothing of it is stored, acknowledged or put on the notebook's feed before the
 * submission itself is durable.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.ts';
import { notebookId, run, testConfig } from '../helpers.ts';

let app: FastifyInstance;
let dataDir: string;
beforeAll(async () => {
  const config = testConfig();
  dataDir = config.dataDir;
  app = await buildApp(config);
  await app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(() => app.close());

describe('a submission and its commit', () => {
  it('acknowledges on the WebSocket before any event of the submission', async () => {
    const { port } = app.server.address() as { port: number };
    const nb = notebookId();
    const socket = new WebSocket(`ws://127.0.0.1:${port}/api/v1/notebooks/${nb}/ws`);
    await new Promise((resolve) => socket.once('open', resolve));
    const seen: { type: string; submissionId?: string }[] = [];
    const done = new Promise<void>((resolve) =>
      socket.on('message', (data) => {
        const message = JSON.parse(data.toString());
        seen.push(message);
        if (message.type === 'submission.finished') resolve();
      }),
    );
    for (let i = 0; i < 5; i++)
      socket.send(JSON.stringify({ type: 'execute', cells: [{ cellId: 'c', code: 'x = 1' }] }));
    await done;
    socket.close();
    const first = seen.findIndex((m) => m.submissionId !== undefined);
    expect(seen[first]!.type).toBe('submitted');
    const id = seen[first]!.submissionId;
    const acked = seen.findIndex((m) => m.type === 'submitted' && m.submissionId === id);
    const events = seen.flatMap((m, i) => (m.type !== 'submitted' && m.submissionId === id ? [i] : []));
    expect(events.length).toBeGreaterThan(0);
    expect(Math.min(...events)).toBeGreaterThan(acked);
  });

  it('records nothing of a submission whose creation failed, and keeps serving', async () => {
    const nb = notebookId();
    // The store refuses this notebook's submissions, as a failing disk would.
    const db = new Database(join(dataDir, 'runcell.db'));
    db.exec(
      `CREATE TRIGGER refuse BEFORE INSERT ON submissions WHEN NEW.notebook_id = '${nb}' ` +
        "BEGIN SELECT RAISE(ABORT, 'the disk said no'); END",
    );
    try {
      const res = await app.inject({
        method: 'POST',
        url: '/api/submit',
        payload: { notebookId: nb, cells: [{ cellId: 'a', code: 'ran = True' }] },
      });
      expect(res.statusCode).toBeGreaterThanOrEqual(500);
      expect(res.json().error ?? res.json().message).toBeTruthy();
      await new Promise((resolve) => setTimeout(resolve, 500)); // what the dispatched cell did
      const rows = db.prepare('SELECT COUNT(*) AS n FROM submissions WHERE notebook_id = ?').get(nb);
      expect(rows).toEqual({ n: 0 });
      expect(
        db
          .prepare(
            'SELECT COUNT(*) AS n FROM results WHERE submission_id NOT IN (SELECT id FROM submissions)',
          )
          .get(),
      ).toEqual({ n: 0 });
    } finally {
      db.exec('DROP TRIGGER refuse');
      db.close();
    }
    // The notebook and the server go on.
    expect((await run(app, nb, ['print("after")'])).results[0]!.output).toBe('after\n');
    expect((await run(app, notebookId(), ['1 + 1'])).results[0]!.output).toBe('2');
  });
});
