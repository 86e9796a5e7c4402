/** Server-side notebook documents through a real app: edits, runs with real kernels, broadcast. */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalStatus, notebookId, startApp, submit } from '../helpers.ts';
import { call, follow, ok, Replica, until } from './helpers.ts';

let app: FastifyInstance;
let port: number;
beforeAll(async () => {
  app = await startApp({ sandboxUidBase: 64100, maxKernels: 16 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  port = typeof address === 'object' && address ? address.port : 0;
});
afterAll(() => app.close());

const url = (id: string, rest = '') => `/api/v1/notebooks/${id}${rest}`;

async function create(language?: string) {
  const id = notebookId('doc');
  return ok(app, 'POST', '/api/v1/notebooks', { id, ...(language ? { language } : {}) }, 201);
}

describe('documents', () => {
  it('creates an empty document and returns its whole state', async () => {
    const doc = await create();
    expect(doc).toMatchObject({
      version: 1,
      nbformat: 4,
      nbformat_minor: 5,
      cells: [],
      runs: [],
      kernel: { language: 'python', state: 'none' },
      metadata: { kernelspec: { name: 'python3', language: 'python' }, language_info: { name: 'python' } },
    });
    expect(await ok(app, 'GET', url(doc.id))).toEqual({ ...doc, seq: expect.any(Number) });
    const again = await call(app, 'POST', '/api/v1/notebooks', { id: doc.id });
    expect(again).toMatchObject({ status: 409, body: { code: 'RUNCELL_ERR_DOCUMENT_EXISTS' } });
    const picked = await ok(app, 'POST', '/api/v1/notebooks', { language: 'js' }, 201);
    expect(picked.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(picked.kernel.language).toBe('javascript');
  });

  it('inserts, edits, moves and deletes cells, one version each', async () => {
    const { id } = await create();
    const a = await ok(app, 'POST', url(id, '/cells'), { source: 'x = 1' }, 201);
    expect(a).toMatchObject({
      version: 2,
      index: 0,
      cell: { cell_type: 'code', source: 'x = 1', outputs: [], execution_count: null },
    });
    const b = await ok(
      app,
      'POST',
      url(id, '/cells'),
      { index: 0, cell_type: 'markdown', source: '# Title', id: 'title' },
      201,
    );
    expect(b).toMatchObject({
      version: 3,
      index: 0,
      cell: { id: 'title', cell_type: 'markdown', metadata: {} },
    });
    expect(b.cell).not.toHaveProperty('outputs');
    const edited = await ok(app, 'PATCH', url(id, `/cells/${a.cell.id}`), {
      source: 'x = 2',
      metadata: { tags: ['setup'] },
      ifVersion: 3,
    });
    expect(edited).toMatchObject({ version: 4, cell: { source: 'x = 2', metadata: { tags: ['setup'] } } });
    expect(await ok(app, 'POST', url(id, `/cells/${a.cell.id}/move`), { index: 0 })).toEqual({
      version: 5,
      from: 1,
      index: 0,
    });
    const retyped = await ok(app, 'PATCH', url(id, '/cells/title'), { cell_type: 'raw' });
    expect(retyped.cell).toEqual({ id: 'title', cell_type: 'raw', source: '# Title', metadata: {} });
    await ok(app, 'PATCH', url(id), {
      metadata: { title: 'T', kernelspec: { name: 'python3', display_name: 'Python 3' } },
    });
    expect(await ok(app, 'DELETE', url(id, '/cells/title'))).toEqual({ version: 8, index: 1 });
    const doc = await ok(app, 'GET', url(id));
    expect(doc.version).toBe(8);
    expect(doc.metadata).toEqual({ title: 'T', kernelspec: { name: 'python3', display_name: 'Python 3' } });
    expect(doc.cells.map((c: any) => [c.id, c.source])).toEqual([[a.cell.id, 'x = 2']]);
    expect(await ok(app, 'GET', url(id, `/cells/${a.cell.id}`))).toEqual(doc.cells[0]);
  });

  it('refuses a change made against another version with 409, and changes nothing', async () => {
    const { id } = await create();
    const { cell } = await ok(app, 'POST', url(id, '/cells'), { source: 'a' }, 201);
    for (const [method, path, body] of [
      ['PATCH', `/cells/${cell.id}`, { source: 'b', ifVersion: 1 }],
      ['POST', '/cells', { ifVersion: 1 }],
      ['POST', `/cells/${cell.id}/move`, { index: 0, ifVersion: 7 }],
      ['DELETE', `/cells/${cell.id}?ifVersion=1`, undefined],
      ['POST', `/cells/${cell.id}/run`, { ifVersion: 1 }],
    ] as const) {
      const reply = await call(app, method, url(id, path), body);
      expect(reply).toMatchObject({ status: 409, body: { code: 'RUNCELL_ERR_DOCUMENT_VERSION_CONFLICT' } });
      expect(reply.body.error).toMatch(/at version 2/);
    }
    expect((await ok(app, 'GET', url(id))).cells).toEqual([cell]);
  });

  it('answers bad input with clear 400s (and 404, 413) naming the problem', async () => {
    const { id } = await create();
    const { cell } = await ok(app, 'POST', url(id, '/cells'), { source: 'a' }, 201);
    const cases: [string, string, unknown, number, string, RegExp][] = [
      ['PATCH', '/cells/nope', { source: 'b' }, 400, 'DOCUMENT_CELL_NOT_FOUND', /no cell "nope"/],
      ['POST', '/cells/nope/run', undefined, 400, 'DOCUMENT_CELL_NOT_FOUND', /nope/],
      ['POST', '/cells', { index: 5 }, 400, 'DOCUMENT_INDEX_INVALID', /index 5 is outside 0..1/],
      ['POST', `/cells/${cell.id}/move`, { index: 1 }, 400, 'DOCUMENT_INDEX_INVALID', /outside 0..0/],
      ['POST', '/run', { from: 0, to: 3 }, 400, 'DOCUMENT_INDEX_INVALID', /to 3/],
      ['POST', '/cells', { id: cell.id }, 400, 'REQUEST_INVALID', /already has a cell/],
      ['POST', '/cells', { id: 'a.b' }, 400, 'REQUEST_INVALID', /id/],
      ['POST', '/cells', { cell_type: 'heading' }, 400, 'REQUEST_INVALID', /cell_type/],
      [
        'PATCH',
        `/cells/${cell.id}`,
        { metadata: { tags: ['a,b'] } },
        400,
        'DOCUMENT_INVALID',
        /\/cells\/0\/metadata\/tags\/0: must match pattern/,
      ],
      [
        'PATCH',
        `/cells/${cell.id}`,
        { outputs: [{ output_type: 'stream' }] },
        400,
        'REQUEST_INVALID',
        /outputs/,
      ],
      [
        'PATCH',
        '',
        { metadata: { kernelspec: { name: 'x' } } },
        400,
        'DOCUMENT_INVALID',
        /\/metadata\/kernelspec: must have required property 'display_name'/,
      ],
      [
        'PATCH',
        `/cells/${cell.id}`,
        { source: 'x'.repeat((1 << 20) + 1) },
        413,
        'DOCUMENT_TOO_LARGE',
        /source is larger than 1048576 bytes/,
      ],
    ];
    for (const [method, path, body, status, code, message] of cases) {
      const reply = await call(app, method, url(id, path), body);
      expect(reply.status, `${method} ${path}`).toBe(status);
      expect(reply.body.code, `${method} ${path}`).toBe(`RUNCELL_ERR_${code}`);
      expect(reply.body.error).toMatch(message);
    }
    expect((await ok(app, 'GET', url(id))).version).toBe(2);
    const markdown = await ok(app, 'POST', url(id, '/cells'), { cell_type: 'markdown' }, 201);
    expect((await call(app, 'POST', url(id, `/cells/${markdown.cell.id}/run`))).body.error).toMatch(
      /only code cells run/,
    );
    expect(await call(app, 'GET', url('never-made'))).toMatchObject({
      status: 404,
      body: { code: 'RUNCELL_ERR_DOCUMENT_NOT_FOUND' },
    });
    expect((await call(app, 'POST', '/api/v1/notebooks', { language: 'cobol' })).body.code).toBe(
      'RUNCELL_ERR_LANGUAGE_UNSUPPORTED',
    );
    expect((await call(app, 'POST', '/api/v1/notebooks', { name: 'x' })).body.error).toMatch(/invalid body/);
  });

  it('bounds the cells of a document', async () => {
    const { id } = await create();
    // 1000 cells fit (inserted over one submission's worth of requests), the next does not.
    const ipynb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {},
      cells: Array.from({ length: 1000 }, (_, i) => ({
        id: `c${i}`,
        cell_type: 'raw',
        metadata: {},
        source: '',
      })),
    };
    const big = await ok(app, 'POST', `/api/v1/notebooks?id=${id}-big`, ipynb, 201);
    expect(big.cells).toHaveLength(1000);
    const full = await call(app, 'POST', url(big.id, '/cells'), {});
    expect(full).toMatchObject({ status: 413, body: { code: 'RUNCELL_ERR_DOCUMENT_TOO_LARGE' } });
    ipynb.cells.push({ id: 'one-more', cell_type: 'raw', metadata: {}, source: '' });
    expect((await call(app, 'POST', '/api/v1/notebooks', ipynb)).status).toBe(413);
  });

  it('runs a cell through the engine; its outputs and execution count land in the document', async () => {
    const { id } = await create();
    const { cell } = await ok(app, 'POST', url(id, '/cells'), { source: "print('hi')\nx = 40\nx + 2" }, 201);
    const run = await ok(app, 'POST', url(id, `/cells/${cell.id}/run`), {}, 202);
    expect(run).toMatchObject({ submissionId: expect.any(String), cellIds: [cell.id], version: 2 });
    // The normal submission path: the run is an ordinary submission of the notebook.
    expect((await finalStatus(app, run.submissionId)).results[0]!.output).toBe('hi\n42');
    const doc = await until(app, id, (d) => d.runs.length === 0);
    expect(doc.version).toBe(3);
    expect(doc.cells[0]).toEqual({
      ...cell,
      execution_count: 1,
      outputs: [
        { output_type: 'stream', name: 'stdout', text: 'hi\n' },
        { output_type: 'execute_result', execution_count: 1, data: { 'text/plain': '42' }, metadata: {} },
      ],
    });
    expect(doc.kernel).toEqual({ language: 'python', state: 'idle' });
    const again = await ok(app, 'POST', url(id, `/cells/${cell.id}/run`), undefined, 202);
    await finalStatus(app, again.submissionId);
    expect((await until(app, id, (d) => d.runs.length === 0)).cells[0].execution_count).toBe(2);
    // Clearing the outputs.
    const cleared = await ok(app, 'PATCH', url(id, `/cells/${cell.id}`), { outputs: [] });
    expect(cleared.cell).toMatchObject({ outputs: [], execution_count: null });
  });

  it('runs all code cells, or a range, in order as one submission, skipping markdown', async () => {
    const { id } = await create();
    for (const [cell_type, source] of [
      ['code', 'n = 1'],
      ['markdown', '*not run*'],
      ['code', 'n += 10\nn'],
      ['code', 'n * 2'],
    ])
      await ok(app, 'POST', url(id, '/cells'), { cell_type, source }, 201);
    const all = await ok(app, 'POST', url(id, '/run'), {}, 202);
    expect(all.cellIds).toHaveLength(3);
    await finalStatus(app, all.submissionId);
    let doc = await until(app, id, (d) => d.runs.length === 0);
    const values = (d: any) =>
      d.cells.map(
        (c: any) =>
          c.outputs?.find((o: any) => o.output_type === 'execute_result')?.data['text/plain'] ?? null,
      );
    expect(values(doc)).toEqual([null, null, '11', '22']);
    expect(doc.cells.map((c: any) => c.execution_count ?? null)).toEqual([1, null, 2, 3]);
    const range = await ok(app, 'POST', url(id, '/run'), { from: 2, to: 3 }, 202);
    expect(range.cellIds).toEqual([doc.cells[2].id]);
    await finalStatus(app, range.submissionId);
    doc = await until(app, id, (d) => d.runs.length === 0);
    expect(values(doc)).toEqual([null, null, '21', '22']);
    expect((await call(app, 'POST', url(id, '/run'), { from: 1, to: 2 })).body.error).toMatch(
      /no code cell in \[1, 2\)/,
    );
  });

  it('keeps errors and stops a run at the first failing cell, as Jupyter does', async () => {
    const { id } = await create();
    await ok(app, 'POST', url(id, '/cells'), { source: '1 / 0' }, 201);
    await ok(app, 'POST', url(id, '/cells'), { source: "print('never')" }, 201);
    const run = await ok(app, 'POST', url(id, '/run'), {}, 202);
    await finalStatus(app, run.submissionId);
    const doc = await until(app, id, (d) => d.runs.length === 0);
    expect(doc.cells[0].outputs).toEqual([
      expect.objectContaining({
        output_type: 'error',
        ename: 'ZeroDivisionError',
        evalue: 'division by zero',
      }),
    ]);
    expect(doc.cells[1]).toMatchObject({ outputs: [], execution_count: null });
  });

  it('keeps what a hostile kernel sends from making the document invalid nbformat', async () => {
    const { id } = await create();
    const source = "display({'text/html': 5, 'text/plain': 'x'}, raw=True)\nprint('after')";
    const { cell } = await ok(app, 'POST', url(id, '/cells'), { source }, 201);
    const run = await ok(app, 'POST', url(id, `/cells/${cell.id}/run`), {}, 202);
    await finalStatus(app, run.submissionId);
    const doc = await until(app, id, (d) => d.runs.length === 0);
    expect(doc.cells[0].outputs).toEqual([
      {
        output_type: 'stream',
        name: 'stderr',
        text: expect.stringMatching(
          /^\[runcell\] an output was left out: it is not valid nbformat \(\/outputs\/0\/data\/text~1html: must be/,
        ),
      },
      { output_type: 'stream', name: 'stdout', text: 'after\n' },
    ]);
  });

  it('announces large outputs without their content; clients GET the cell', async () => {
    const { id, seq } = await create();
    const client = await follow(port, id, seq);
    const { cell } = await ok(app, 'POST', url(id, '/cells'), { source: "print('x' * 100_000)" }, 201);
    await ok(app, 'POST', url(id, `/cells/${cell.id}/run`), {}, 202);
    const landed = await client.next((m) => m.type === 'document.changed' && m.op === 'outputs');
    expect(landed).toMatchObject({ cellId: cell.id, execution_count: 1, outputsOmitted: true });
    expect(landed).not.toHaveProperty('outputs');
    const full = await ok(app, 'GET', url(id, `/cells/${cell.id}`));
    expect(full.outputs[0].text).toBe('x'.repeat(100_000) + '\n');
    client.socket.close();
  });

  it('imports a notebook in a language this server lacks, and refuses to run it', async () => {
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {
        kernelspec: { name: 'ir', display_name: 'R', language: 'R' },
        language_info: { name: 'R' },
      },
      cells: [
        { id: 'a', cell_type: 'code', metadata: {}, source: '1 + 1', execution_count: null, outputs: [] },
      ],
    };
    const doc = await ok(app, 'POST', `/api/v1/notebooks?id=${notebookId('r')}`, nb, 201);
    expect(doc.kernel).toEqual({ language: null, state: 'none' });
    const run = await call(app, 'POST', url(doc.id, '/run'));
    expect(run).toMatchObject({ status: 400, body: { code: 'RUNCELL_ERR_LANGUAGE_UNSUPPORTED' } });
  });

  it('lets the Pennant API go on for notebooks with no document, and for those with one', async () => {
    const plain = notebookId('plain');
    const status = await finalStatus(
      app,
      await submit(app, { notebookId: plain, cells: [{ cellId: 'a', code: 'v = 6 * 7\nv' }] }),
    );
    expect(status.results[0]!.output).toBe('42');
    expect((await call(app, 'GET', url(plain))).status).toBe(404);
    // A document for a notebook that already ran cells shares its kernel; Pennant runs land nowhere.
    const doc = await ok(app, 'POST', '/api/v1/notebooks', { id: plain }, 201);
    expect(doc.kernel.state).toBe('idle');
    const { cell } = await ok(app, 'POST', url(plain, '/cells'), { source: 'v * 2' }, 201);
    const run = await ok(app, 'POST', url(plain, `/cells/${cell.id}/run`), {}, 202);
    await finalStatus(app, run.submissionId);
    const landed = await until(app, plain, (d) => d.runs.length === 0);
    expect(landed.cells[0].outputs[0].data['text/plain']).toBe('84');
    await finalStatus(app, await submit(app, { notebookId: plain, cells: [{ cellId: cell.id, code: '0' }] }));
    expect((await ok(app, 'GET', url(plain))).version).toBe(landed.version);
  });
});

describe('broadcast', () => {
  it('brings two clients, one joining late, to the same state as the server', async () => {
    const { id, seq } = await create();
    const first = await ok(app, 'GET', url(id));
    const a = await follow(port, id, seq);
    const replicaA = new Replica(first);
    const x = await ok(app, 'POST', url(id, '/cells'), { source: 'x = 3' }, 201);
    await ok(app, 'POST', url(id, '/cells'), { cell_type: 'markdown', source: 'notes' }, 201);
    // B joins now: the full state, then the feed from the position it came with.
    const joined = await ok(app, 'GET', url(id));
    const b = await follow(port, id, joined.seq);
    const replicaB = new Replica(joined);
    const y = await ok(app, 'POST', url(id, '/cells'), { index: 0, source: "print('y')\nx * 2" }, 201);
    await ok(app, 'PATCH', url(id, `/cells/${x.cell.id}`), {
      source: 'x = 4',
      metadata: { collapsed: false },
    });
    await ok(app, 'POST', url(id, `/cells/${y.cell.id}/move`), { index: 2 });
    const scratch = await ok(app, 'POST', url(id, '/cells'), { source: 'scratch' }, 201);
    await ok(app, 'DELETE', url(id, `/cells/${scratch.cell.id}`));
    const run = await ok(app, 'POST', url(id, '/run'), {}, 202);
    await finalStatus(app, run.submissionId);
    const final = await until(app, id, (d) => d.runs.length === 0);
    const outputsOf = (m: any) =>
      m.type === 'document.changed' && m.op === 'outputs' && m.cellId === y.cell.id;
    await Promise.all([a.next(outputsOf), b.next(outputsOf)]);
    for (const m of a.messages) replicaA.apply(m);
    for (const m of b.messages) replicaB.apply(m);
    const server = new Replica(final).state;
    expect(replicaA.state).toEqual(server);
    expect(replicaB.state).toEqual(server);
    expect(server.cells.map((c: any) => c.source)).toEqual(['x = 4', 'notes', "print('y')\nx * 2"]);
    expect(server.cells[2].outputs).toEqual([
      { output_type: 'stream', name: 'stdout', text: 'y\n' },
      { output_type: 'execute_result', execution_count: 2, data: { 'text/plain': '8' }, metadata: {} },
    ]);
    // Both saw the same document.changed events, in the same feed order.
    const changes = (ms: any[]) =>
      ms
        .filter((m) => m.type === 'document.changed' && m.version > joined.version)
        .map((m) => [m.seq, m.version, m.op]);
    expect(changes(a.messages)).toEqual(changes(b.messages));
    expect(changes(a.messages).map(([, , op]) => op)).toEqual([
      'insert',
      'edit',
      'move',
      'insert',
      'delete',
      'outputs',
      'outputs',
    ]);
    a.socket.close();
    b.socket.close();
  });
});
