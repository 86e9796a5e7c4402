/**
 * .ipynb import and export through a real app: Jupyter's own files round-trip byte for byte,
 * outputs of real kernels export valid against the committed nbformat schema (checked with Ajv,
 * and with Jupyter's nbformat itself), and documents survive a restart of the server.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.ts';
import { finalStatus, notebookId, testConfig } from '../helpers.ts';
import { call, ok, until } from './helpers.ts';

const SCHEMA = new URL('../../src/notebooks/nbformat.v4.5.schema.json', import.meta.url);
const FIXTURE = readFileSync(new URL('./fixtures/rich.ipynb', import.meta.url), 'utf8');
const IPYNB = 'application/x-ipynb+json';
/** A 1x1 PNG, base64. */
const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

/** An Ajv validator of its own, from the committed schema (draft-04 declaration dropped). */
const validate = (() => {
  const { $schema: _, ...schema } = JSON.parse(readFileSync(SCHEMA, 'utf8'));
  return new Ajv({ strict: false, allErrors: true }).compile(schema);
})();

/** Jupyter's nbformat reads and validates it (as Jupyter does when opening a file). */
function jupyterValidates(text: string): string {
  const code =
    'import sys, nbformat\nnb = nbformat.reads(sys.stdin.read(), as_version=4)\nnbformat.validate(nb)\nprint(len(nb.cells))';
  return execFileSync('/usr/bin/python3', ['-c', code], { input: text, encoding: 'utf8' }).trim();
}

const config = testConfig({ sandboxUidBase: 64150, maxKernels: 16 });
let app: FastifyInstance;
beforeAll(async () => {
  app = await buildApp(config);
});
afterAll(() => app.close());

const upload = async (text: string, id = notebookId('ipynb')) => {
  const res = await app.inject({
    method: 'POST',
    url: `/api/v1/notebooks?id=${id}`,
    headers: { 'content-type': IPYNB },
    payload: text,
  });
  return { status: res.statusCode, body: res.json() };
};

const exportText = async (id: string) => {
  const res = await app.inject({ method: 'GET', url: `/api/v1/notebooks/${id}/export` });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/x-ipynb\+json/);
  expect(res.headers['content-disposition']).toBe(`attachment; filename="${id}.ipynb"`);
  return res.body;
};

describe('ipynb', () => {
  it('round-trips a notebook Jupyter wrote, byte for byte, with its rich outputs', async () => {
    const { status, body: doc } = await upload(FIXTURE);
    expect(status).toBe(201);
    // Inside, multiline strings are joined: sources are text to edit.
    expect(doc.cells.map((c: any) => c.id)).toEqual([
      'intro',
      'streams',
      'display',
      'fails',
      'raw-1',
      'empty',
    ]);
    expect(doc.cells[1].source).toBe("import sys\nprint('out')\nprint('err', file=sys.stderr)\n{'a': 1}");
    expect(doc.cells[2].outputs[0].data['image/svg+xml']).toBe('<svg>\n</svg>\n');
    expect(doc.cells[1].outputs[2].data['application/json']).toEqual({ a: [1, 2] });
    expect(doc.cells[4].source).toBe('raw\r\ntext\n');
    const text = await exportText(doc.id);
    expect(text).toBe(FIXTURE);
    expect(validate(JSON.parse(text)), JSON.stringify(validate.errors)).toBe(true);
  });

  it('imports older nbformat 4 notebooks (no cell ids, unsplit strings) as 4.5', async () => {
    const old = {
      nbformat: 4,
      nbformat_minor: 2,
      metadata: { kernelspec: { name: 'python3', display_name: 'Python 3' } },
      cells: [
        { cell_type: 'markdown', metadata: {}, source: 'one\ntwo' },
        { cell_type: 'code', metadata: {}, source: ['a = 1\n', 'a'], execution_count: null, outputs: [] },
      ],
    };
    const { status, body: doc } = await upload(JSON.stringify(old));
    expect(status).toBe(201);
    const ids = doc.cells.map((c: any) => c.id);
    expect(new Set(ids).size).toBe(2);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}$/);
    const exported = JSON.parse(await exportText(doc.id));
    expect(validate(exported), JSON.stringify(validate.errors)).toBe(true);
    expect(exported).toMatchObject({ nbformat: 4, nbformat_minor: 5 });
    expect(exported.cells.map((c: any) => c.source)).toEqual([
      ['one\n', 'two'],
      ['a = 1\n', 'a'],
    ]);
  });

  it('refuses an invalid notebook with the JSON path of the first problem', async () => {
    const good = () => JSON.parse(FIXTURE);
    const cases: [string, (nb: any) => void, RegExp][] = [
      [
        'no stream name',
        (nb) => delete nb.cells[1].outputs[0].name,
        /\/cells\/1\/outputs\/0: must have required property 'name'/,
      ],
      [
        'unknown output',
        (nb) => (nb.cells[1].outputs[1].output_type = 'pager'),
        /\/cells\/1\/outputs\/1\/output_type: must be one of/,
      ],
      [
        'unknown cell type',
        (nb) => (nb.cells[0].cell_type = 'heading'),
        /\/cells\/0\/cell_type: must be one of "code", "markdown", "raw"/,
      ],
      [
        'stray property',
        (nb) => (nb.cells[3].prompt = 3),
        /\/cells\/3: must NOT have additional properties \("prompt"\)/,
      ],
      ['bad source', (nb) => (nb.cells[5].source = 5), /\/cells\/5\/source: must be string/],
      ['bad id', (nb) => (nb.cells[2].id = 'has space'), /\/cells\/2\/id: must match pattern/],
      ['duplicate id', (nb) => (nb.cells[2].id = 'streams'), /\/cells\/2\/id: duplicates the id of cell 1/],
      [
        'bad kernelspec',
        (nb) => delete nb.metadata.kernelspec.display_name,
        /\/metadata\/kernelspec: must have required property 'display_name'/,
      ],
      ['nbformat 3', (nb) => (nb.nbformat = 3), /\/nbformat: must be 4/],
      ['no cells', (nb) => delete nb.cells, /\/cells: must be array/],
    ];
    for (const [what, spoil, message] of cases) {
      const nb = good();
      spoil(nb);
      const { status, body } = await upload(JSON.stringify(nb));
      expect(status, what).toBe(400);
      expect(body.code, what).toBe('RUNCELL_ERR_DOCUMENT_INVALID');
      expect(body.error, what).toMatch(message);
    }
    // Plain application/json works too, and malformed JSON is a JSON error.
    expect(
      (await call(app, 'POST', `/api/v1/notebooks?id=${notebookId()}`, JSON.parse(FIXTURE))).status,
    ).toBe(201);
    expect((await upload('{"nbformat": 4,')).body.code).toBe('RUNCELL_ERR_REQUEST_MALFORMED_JSON');
  });

  it('imports, runs in a real kernel, and exports rich outputs that validate and open in Jupyter', async () => {
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {
        kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' },
        language_info: { name: 'python' },
      },
      cells: [
        { id: 'md', cell_type: 'markdown', metadata: {}, source: '# Rich' },
        {
          id: 'html',
          cell_type: 'code',
          metadata: {},
          execution_count: null,
          outputs: [],
          source: [
            'class Bold:\n',
            "    def _repr_html_(self): return '<b>bold</b>'\n",
            "    def __repr__(self): return 'Bold()'\n",
            "print('line 1')\n",
            'display(Bold())\n',
            'Bold()',
          ],
        },
        {
          id: 'plot',
          cell_type: 'code',
          metadata: {},
          execution_count: null,
          outputs: [],
          source: [
            'import base64\n',
            'class Dot:\n',
            `    def _repr_png_(self): return base64.b64decode('${PNG}')\n`,
            "    def __repr__(self): return '<Dot>'\n",
            'display(Dot())',
          ],
        },
        {
          id: 'oops',
          cell_type: 'code',
          metadata: {},
          execution_count: null,
          outputs: [],
          source: "raise ValueError('bad')",
        },
      ],
    };
    const { body: doc } = await upload(JSON.stringify(nb));
    const run = await ok(app, 'POST', `/api/v1/notebooks/${doc.id}/run`, {}, 202);
    expect(run.cellIds).toEqual(['html', 'plot', 'oops']);
    await finalStatus(app, run.submissionId);
    await until(app, doc.id, (d) => d.runs.length === 0);
    const text = await exportText(doc.id);
    const exported = JSON.parse(text);
    expect(validate(exported), JSON.stringify(validate.errors)).toBe(true);
    expect(jupyterValidates(text)).toBe('4');
    const [, html, plot, oops] = exported.cells;
    expect(html.execution_count).toBe(1);
    expect(html.outputs).toEqual([
      { output_type: 'stream', name: 'stdout', text: ['line 1\n'] },
      {
        output_type: 'display_data',
        data: { 'text/html': ['<b>bold</b>'], 'text/plain': ['Bold()'] },
        metadata: {},
      },
      {
        output_type: 'execute_result',
        execution_count: 1,
        data: { 'text/html': ['<b>bold</b>'], 'text/plain': ['Bold()'] },
        metadata: {},
      },
    ]);
    expect(plot.outputs).toEqual([
      { output_type: 'display_data', data: { 'image/png': PNG, 'text/plain': ['<Dot>'] }, metadata: {} },
    ]);
    expect(oops).toMatchObject({
      execution_count: 3,
      outputs: [{ output_type: 'error', ename: 'ValueError', evalue: 'bad', traceback: expect.any(Array) }],
    });
    // What was exported imports again to the same document.
    const again = await upload(text);
    expect(await exportText(again.body.id)).toBe(text);
  });
});

describe('persistence', () => {
  it('keeps documents across a restart, and lands the result of a run the restart cut short', async () => {
    const { body: doc } = await upload(FIXTURE);
    const { cell } = await ok(
      app,
      'POST',
      `/api/v1/notebooks/${doc.id}/cells`,
      { source: 'import time\ntime.sleep(60)' },
      201,
    );
    const run = await ok(app, 'POST', `/api/v1/notebooks/${doc.id}/cells/${cell.id}/run`, {}, 202);
    await until(app, doc.id, (d) => d.kernel.state === 'busy');
    const before = await ok(app, 'GET', `/api/v1/notebooks/${doc.id}`);
    const exported = await exportText(doc.id);
    await app.close();

    app = await buildApp(config);
    const after = await until(app, doc.id, (d) => d.runs.length === 0);
    const { seq: _s, kernel: _k, runs: _r, version: _v, updatedAt: _u, ...kept } = before;
    const { seq: _s2, kernel, runs: _r2, version, updatedAt: _u2, ...now } = after;
    // The interrupted run's critical result landed in the cell, the rest is as it was.
    const ran = now.cells.pop();
    expect(ran).toMatchObject({ id: cell.id, outputs: [expect.objectContaining({ output_type: 'error' })] });
    expect(ran.outputs[0].evalue).toMatch(/shutting down|shut down/);
    kept.cells.pop();
    expect(now).toEqual(kept);
    expect(version).toBe(before.version + 1);
    expect(kernel.state).toBe('none');
    expect(await ok(app, 'GET', `/api/status/${run.submissionId}`)).toMatchObject({ status: 'error' });
    const reexported = JSON.parse(await exportText(doc.id));
    reexported.cells.pop();
    const original = JSON.parse(exported);
    original.cells.pop();
    expect(reexported).toEqual(original);
  });
});
