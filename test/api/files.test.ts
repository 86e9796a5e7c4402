/** The workspace files API, against real sandboxes, including planted links. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notebookId, run, startApp, tempDir } from '../helpers.ts';

let app: FastifyInstance;
beforeAll(async () => {
  app = await startApp({ maxUploadBytes: 4 << 20, workspaceMb: 16 });
});
afterAll(() => app.close());

const url = (nb: string, path: string) => `/api/v1/notebooks/${nb}/files/${path}`;
const put = (nb: string, path: string, body: Buffer | string) =>
  app.inject({
    method: 'PUT',
    url: url(nb, path),
    payload: body,
    headers: { 'content-type': 'application/octet-stream' },
  });

describe('workspace files', () => {
  it('uploads a file a cell reads, and downloads what a cell wrote, byte for byte', async () => {
    const nb = notebookId();
    const up = await put(nb, 'data/input.csv', 'a,b\n1,2\n');
    expect(up.statusCode).toBe(201);
    expect(up.json()).toEqual({ path: 'data/input.csv', size: 8 });
    const binary = randomBytes(300_000);
    expect((await put(nb, 'blob.bin', binary)).statusCode).toBe(201);
    const status = await run(app, nb, [
      "print(open('data/input.csv').read().splitlines()[1])",
      "open('out.bin', 'wb').write(open('blob.bin', 'rb').read()[::-1])",
    ]);
    expect(status.results[0]!.output).toBe('1,2\n');
    const down = await app.inject(url(nb, 'out.bin'));
    expect(down.statusCode).toBe(200);
    expect(down.headers['content-type']).toBe('application/octet-stream');
    expect(down.rawPayload.equals(Buffer.from(binary).reverse())).toBe(true);
    const listing = (await app.inject(url(nb, ''))).json();
    expect(listing.entries.map((e: { name: string; type: string }) => [e.name, e.type])).toEqual([
      ['blob.bin', 'file'],
      ['data', 'directory'],
      ['out.bin', 'file'],
    ]);
    // A directory without the trailing slash is listed too.
    expect((await app.inject(url(nb, 'data'))).json().entries[0]).toMatchObject({
      name: 'input.csv',
      size: 8,
    });
  });

  it('uploads JSON as bytes, not as a parsed body', async () => {
    const nb = notebookId();
    const res = await app.inject({
      method: 'PUT',
      url: url(nb, 'config.json'),
      payload: '{"a": 1}',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.statusCode).toBe(201);
    expect((await app.inject(url(nb, 'config.json'))).body).toBe('{"a": 1}');
  });

  it('deletes files and directory trees', async () => {
    const nb = notebookId();
    await put(nb, 'tree/a/b.txt', 'x');
    expect((await app.inject({ method: 'DELETE', url: url(nb, 'tree') })).statusCode).toBe(200);
    const gone = await app.inject(url(nb, 'tree/a/b.txt'));
    expect(gone.statusCode).toBe(404);
    expect(gone.json().code).toBe('RUNCELL_ERR_FILE_NOT_FOUND');
  });

  it('never follows a link a cell planted: not to read, write or delete host files', async () => {
    // Attack: the cell links names in its workspace to host paths (which do not exist inside
    // its sandbox, but do for the server), then asks the API to read, overwrite and delete
    // through them. Containment: every operation runs in the notebook's sandbox and refuses
    // links; the host files keep their content.
    const host = tempDir();
    writeFileSync(join(host, 'secret.txt'), 'host secret');
    mkdirSync(join(host, 'dir'));
    const nb = notebookId();
    await run(app, nb, [
      `import os\nos.symlink(${JSON.stringify(join(host, 'secret.txt'))}, 'leak')\nos.symlink(${JSON.stringify(join(host, 'dir'))}, 'd')`,
    ]);
    const read = await app.inject(url(nb, 'leak'));
    expect(read.statusCode).toBe(400);
    expect(read.json().code).toBe('RUNCELL_ERR_FILE_SYMLINK');
    expect(read.body).not.toContain('host secret');
    expect((await put(nb, 'leak', 'overwritten')).json().code).toBe('RUNCELL_ERR_FILE_SYMLINK');
    expect((await put(nb, 'd/planted', 'x')).json().code).toBe('RUNCELL_ERR_FILE_SYMLINK');
    expect((await app.inject(url(nb, 'd/'))).json().code).toBe('RUNCELL_ERR_FILE_SYMLINK');
    // Deleting the link removes the link itself, nothing behind it.
    expect((await app.inject({ method: 'DELETE', url: url(nb, 'd') })).statusCode).toBe(200);
    expect(readFileSync(join(host, 'secret.txt'), 'utf8')).toBe('host secret');
    expect(statSync(join(host, 'dir')).isDirectory()).toBe(true);
    expect(readdirSync(join(host, 'dir'))).toEqual([]);
  });

  it('rejects paths that climb out, uploads over the limit, and a full workspace', async () => {
    const nb = notebookId();
    await put(nb, 'x', 'x');
    const climb = await app.inject(url(nb, 'a/../../etc/passwd'));
    expect([400, 404]).toContain(climb.statusCode);
    expect(climb.json().code).toMatch(/RUNCELL_ERR_(FILE_PATH_INVALID|ROUTE_NOT_FOUND)/);
    const big = await put(nb, 'big.bin', Buffer.alloc(5 << 20));
    expect(big.statusCode).toBe(413);
    expect(big.json().code).toBe('RUNCELL_ERR_FILE_TOO_LARGE');
    // 16 MiB workspace: the fifth 3.9 MiB upload does not fit.
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await put(nb, `fill${i}`, Buffer.alloc(3_900_000))).statusCode);
    expect(codes.slice(0, 3)).toEqual([201, 201, 201]);
    expect(codes).toContain(507);
  });

  it('answers 404 for a notebook never seen', async () => {
    const res = await app.inject(url(notebookId('never'), ''));
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('RUNCELL_ERR_NOTEBOOK_NOT_FOUND');
  });
});
