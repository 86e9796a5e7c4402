/** The Pennant REST contract: paths, status codes and shapes, as Pennant clients use them. */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalStatus, notebookId, run, startApp, submit } from '../helpers.ts';

let app: FastifyInstance;
beforeAll(async () => {
  app = await startApp();
});
afterAll(() => app.close());

describe('Pennant API', () => {
  it('GET /healthz says it can run cells', async () => {
    const res = await app.inject('/healthz');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'ok', sandbox: 'bwrap', isolated: true });
  });

  it("runs the seed's example: 202 {message, submissionId}, then the results", async () => {
    const nb = notebookId('111');
    const res = await app.inject({
      method: 'POST',
      url: '/api/submit',
      payload: { notebookId: nb, cells: [{ cellId: '3', code: "print('Hello, world!')" }] },
    });
    expect(res.statusCode).toBe(202);
    const { message, submissionId } = res.json();
    expect(typeof message).toBe('string');
    const status = await finalStatus(app, submissionId);
    expect(status).toMatchObject({
      submissionId,
      status: 'success',
      requestOrder: ['3'],
      cellsExecuted: ['3'],
      results: [{ cellId: '3', type: 'output', output: 'Hello, world!\n' }],
    });
  });

  it("runs the JavaScript seed's example under /javascript with const declarations", async () => {
    const nb = notebookId('111');
    const cells = [
      { cellId: '3', code: "const name = 'Bob'" },
      { cellId: '4', code: 'const age = 30' },
      { cellId: '5', code: "console.log(name, ' is ', age, ' years old')" },
    ];
    const id = await submit(app, { notebookId: nb, cells, timeout: 5 }, '/javascript');
    const status = await finalStatus(app, id, '/javascript');
    expect(status.status).toBe('success');
    expect(status.requestOrder).toEqual(['3', '4', '5']);
    expect(status.cellsExecuted).toEqual(['3', '4', '5']);
    expect(status.results.map((r) => [r.cellId, r.type, r.output])).toEqual([
      ['3', 'output', ''],
      ['4', 'output', ''],
      ['5', 'output', 'Bob  is  30  years old\n'],
    ]);
    // Re-running the cell that declares the const works, as in a notebook.
    const again = await run(
      app,
      nb,
      [{ code: "const name = 'Alice'" }, 'console.log(name)'],
      {},
      '/javascript',
    );
    expect(again.results.map((r) => r.output)).toEqual(['', 'Alice\n']);
  });

  it('names submit and status by resource in its own API too', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/submissions',
      payload: { notebookId: notebookId(), cells: [{ cellId: 'a', code: '6 * 7' }] },
    });
    expect(res.statusCode).toBe(202);
    const status = (await app.inject(`/api/v1/submissions/${res.json().submissionId}?wait=30`)).json();
    expect(status).toMatchObject({ status: 'success', results: [{ cellId: 'a', output: '42' }] });
    expect((await app.inject('/python/api/v1/submissions/x')).statusCode).toBe(404);
  });

  it('serves every route under /python too', async () => {
    const nb = notebookId();
    const status = await run(app, nb, ['x = 40', 'x + 2'], {}, '/python');
    expect(status.results.at(-1)!.output).toBe('42');
    const active = await app.inject(`/python/notebookstatus/${nb}`);
    expect(active.json()).toEqual({ notebookId: nb, active: true });
    expect((await app.inject({ method: 'POST', url: `/python/api/reset/${nb}` })).statusCode).toBe(200);
  });

  it('a cell may name its own language', async () => {
    const status = await run(app, notebookId(), [
      { code: 'print("py")' },
      { code: 'console.log("js")', language: 'javascript' },
    ]);
    expect(status.results.map((r) => r.output)).toEqual(['py\n', 'js\n']);
  });

  it('lists its runtimes, and takes a language by alias or with a version', async () => {
    const runtimes = (await app.inject('/api/v1/runtimes')).json();
    // The built-in kernels first, then what else this machine has (Java, Jupyter kernelspecs).
    expect(runtimes.map((r: { language: string }) => r.language).slice(0, 3)).toEqual([
      'python',
      'javascript',
      'typescript',
    ]);
    expect(runtimes[0]).toMatchObject({ aliases: ['py', 'python3'], stateful: true });
    const python = runtimes[0].version as string;
    const status = await run(app, notebookId(), [
      {
        code: 'import sys; print(sys.version_info[0])',
        language: `python@${python.split('.').slice(0, 2).join('.')}`,
      },
      { code: 'console.log(typeof process)', language: 'node' },
      { code: 'print(2)', language: 'py' },
    ]);
    expect(status.results.map((r) => r.output)).toEqual(['3\n', 'object\n', '2\n']);
  });

  it('accepts timeout as a number or a numeric string', async () => {
    for (const timeout of [5, '5', 2.5]) {
      const status = await run(app, notebookId(), ['1'], { timeout });
      expect(status.status).toBe('success');
    }
  });

  it('shows partial results while pending, and ?wait returns pending after N seconds', async () => {
    const nb = notebookId();
    const id = await submit(app, {
      notebookId: nb,
      cells: [
        { cellId: 'a', code: 'print("first")' },
        { cellId: 'b', code: 'import time; time.sleep(3)' },
      ],
    });
    let body;
    const deadline = Date.now() + 10_000;
    do {
      body = (await app.inject(`/api/status/${id}?wait=0.3`)).json();
    } while (body.results.length === 0 && Date.now() < deadline);
    expect(body.status).toBe('pending');
    expect(body.results).toEqual([expect.objectContaining({ cellId: 'a', output: 'first\n' })]);
    const started = Date.now();
    const waited = (await app.inject(`/api/status/${id}?wait=1`)).json();
    expect(waited.status).toBe('pending');
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect((await finalStatus(app, id)).status).toBe('success');
  });

  it('says a submission is running from its first cell on, before any result is stored', async () => {
    const id = await submit(app, {
      notebookId: notebookId(),
      cells: [{ cellId: 'a', code: 'import time; time.sleep(1.5)' }],
    });
    let body;
    const deadline = Date.now() + 10_000;
    do {
      body = (await app.inject(`/api/status/${id}?wait=0.1`)).json();
    } while (body.state === 'pending' && Date.now() < deadline);
    expect(body).toMatchObject({ status: 'pending', state: 'running', results: [] });
    expect((await finalStatus(app, id)).state).toBe('success');
  });

  it('?wait answers as soon as the submission is final', async () => {
    const id = await submit(app, {
      notebookId: notebookId(),
      cells: [{ cellId: 'a', code: 'import time; time.sleep(0.5)' }],
    });
    const started = Date.now();
    const res = await app.inject(`/api/status/${id}?wait=20`);
    expect(res.json().status).toBe('success');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('reset is idempotent, also for a notebook never seen', async () => {
    const res = await app.inject({ method: 'POST', url: `/api/reset/${notebookId('never')}` });
    expect(res.statusCode).toBe(200);
    expect(typeof res.json().message).toBe('string');
  });

  it('notebookstatus: 404 for a notebook never seen, active after a run, inactive after reset', async () => {
    const nb = notebookId();
    expect((await app.inject(`/notebookstatus/${nb}`)).statusCode).toBe(404);
    await run(app, nb, ['x = 1']);
    for (const path of [`/notebookstatus/${nb}`, `/api/notebookstatus/${nb}`]) {
      expect((await app.inject(path)).json()).toEqual({ notebookId: nb, active: true });
    }
    await app.inject({ method: 'POST', url: `/api/reset/${nb}` });
    expect((await app.inject(`/notebookstatus/${nb}`)).json()).toEqual({ notebookId: nb, active: false });
  });

  it('formats Python in black style at both paths, and says where invalid code is wrong', async () => {
    for (const url of ['/format-python', '/api/format-python']) {
      const ok = await app.inject({
        method: 'POST',
        url,
        payload: { code: "x = {  'a':37,'b':42}\ndef f(a,b): return a+b" },
      });
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toEqual({
        formatted_code: 'x = {"a": 37, "b": 42}\n\n\ndef f(a, b):\n    return a + b\n',
      });
    }
    const bad = await app.inject({
      method: 'POST',
      url: '/format-python',
      payload: { code: 'x = 1\ndef f(:\n  pass\n' },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatch(/line 2, column 7/);
  });

  it('unknown submission and unknown route are JSON 404s', async () => {
    const res = await app.inject('/api/status/00000000-0000-0000-0000-000000000000');
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ code: 'RUNCELL_ERR_SUBMISSION_NOT_FOUND' });
    const route = await app.inject('/api/nope');
    expect(route.statusCode).toBe(404);
    expect(route.json()).toMatchObject({ code: 'RUNCELL_ERR_ROUTE_NOT_FOUND' });
  });

  it('serves the OpenAPI description and a docs UI', async () => {
    const spec = (await app.inject('/openapi.json')).json();
    expect(spec.openapi).toMatch(/^3\./);
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/api/submit', '/api/status/{submissionId}', '/javascript/api/submit']),
    );
    const docs = await app.inject('/docs/');
    expect(docs.statusCode).toBe(200);
    expect(docs.headers['content-type']).toMatch(/html/);
  });
});

describe('bad input gets a 400 that says what is wrong', () => {
  const valid = { notebookId: 'nb-valid', cells: [{ cellId: 'c', code: '1' }] };
  const cases: [string, unknown, RegExp][] = [
    ['missing notebookId', { cells: valid.cells }, /notebookId/],
    ['empty cells', { ...valid, cells: [] }, /cells/],
    ['cells not an array', { ...valid, cells: 'x' }, /cells/],
    ['numeric cellId', { ...valid, cells: [{ cellId: 3, code: '1' }] }, /cellId/],
    ['missing code', { ...valid, cells: [{ cellId: 'c' }] }, /code/],
    ['code not a string', { ...valid, cells: [{ cellId: 'c', code: 1 }] }, /code/],
    ['path-like notebookId', { ...valid, notebookId: '../etc' }, /notebookId/],
    ['dot notebookId', { ...valid, notebookId: '..' }, /notebookId/],
    ['slash in cellId', { ...valid, cells: [{ cellId: 'a/b', code: '1' }] }, /cellId/],
    ['overlong notebookId', { ...valid, notebookId: 'x'.repeat(129) }, /notebookId/],
    ['non-numeric timeout', { ...valid, timeout: 'soon' }, /timeout/],
    ['negative timeout', { ...valid, timeout: -1 }, /timeout/],
    [
      'unknown language',
      { ...valid, language: 'ruby' },
      /ruby.*available: python@3\.\d+\.\d+, javascript@\d+/,
    ],
    ['unavailable version', { ...valid, language: 'python@2.7' }, /python@2\.7.*available: python@3/],
    ['stopOnError not boolean', { ...valid, stopOnError: 'yes' }, /stopOnError/],
  ];
  it.each(cases)('%s', async (_, payload, message) => {
    const res = await app.inject({ method: 'POST', url: '/api/submit', payload: payload as object });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatch(message);
    expect(res.json().code).toMatch(/^RUNCELL_ERR_/);
  });

  it('malformed JSON', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/submit',
      headers: { 'content-type': 'application/json' },
      payload: '{"notebookId": "x", cells: [',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'RUNCELL_ERR_REQUEST_MALFORMED_JSON' });
  });

  it('wait above 30 seconds', async () => {
    const id = await submit(app, { ...valid, notebookId: notebookId() });
    const res = await app.inject(`/api/status/${id}?wait=31`);
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatch(/at most 30/);
  });
});
