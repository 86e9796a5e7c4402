/** The warm pool: pre-started kernels that new notebooks claim, carrying nothing from before. */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notebookId, run, startApp, tempDir } from '../helpers.ts';

const asRoot = process.getuid?.() === 0;

let app: FastifyInstance;
let root: string;
beforeAll(async () => {
  const dataDir = tempDir('runcell-pool-');
  app = await startApp({ dataDir, kernelPool: ['python=1'], sandboxUidBase: 62600 });
  root = join(dataDir, 'workspaces'); // tempDir() is searchable by the pool uids
});
afterAll(() => app.close());

/**
 * The pool's workspace directories once it holds `count` started kernels (a claimed kernel's
 * volume stays mounted there until it stops).
 */
async function pooled(count: number): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const health = (await app.inject('/healthz')).json();
    if (health.pooledKernels === count) {
      return readdirSync(`${root}.pool`)
        .filter((n) => !n.endsWith('.img'))
        .sort();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the pool never held ${count} kernel(s)`);
}

const PROBE = `import os
print(os.getcwd(), sorted(os.listdir('.')), sorted(k for k in globals() if not k.startswith('_')))`;

describe('warm pool', () => {
  it('hands a pooled kernel to a new notebook, with an empty workspace of its own, and refills', async () => {
    const before = await pooled(1);
    const a = notebookId('pool-a');
    const status = await run(app, a, [PROBE, "secret = 'a'\nwith open('mine.txt', 'w') as f: f.write('a')"]);
    expect(status.results.map((r) => r.output)).toEqual(["/workspace [] ['os']\n", '']);
    // The pooled kernel's workspace became the notebook's (the files API, a sandbox of the
    // notebook's own, sees what the kernel wrote), and a new kernel took its place in the pool.
    const after = await pooled(1);
    const refilled = after.filter((n) => !before.includes(n));
    expect(refilled).toHaveLength(1);
    const file = await app.inject(`/api/v1/notebooks/${a}/files/mine.txt`);
    expect(file.body).toBe('a');
    if (asRoot) {
      expect(existsSync(join(root, `${a}.img`))).toBe(true);
      expect(existsSync(join(`${root}.pool`, `${before[0]}.img`))).toBe(false);
    }

    // The next new notebook gets the refilled kernel: nothing of the first notebook, another uid.
    const b = notebookId('pool-b');
    const other = await run(app, b, [PROBE]);
    expect(other.results[0]!.output).toBe("/workspace [] ['os']\n");
    if (asRoot) {
      const uidOf = (dir: string) => statSync(join(`${root}.pool`, dir)).uid;
      expect(uidOf(refilled[0]!)).not.toBe(uidOf(before[0]!));
    }
    expect((await run(app, a, ['secret'])).results[0]!.output).toBe("'a'");
  });

  it('starts a notebook that already has a workspace the usual way, with its files', async () => {
    const a = notebookId('pool-c');
    await run(app, a, ["with open('kept.txt', 'w') as f: f.write('kept')"]);
    await app.inject({ method: 'POST', url: `/api/reset/${a}` });
    const before = await pooled(1);
    const status = await run(app, a, ["print(open('kept.txt').read())"]);
    expect(status.results[0]!.output).toBe('kept\n');
    // The pooled kernel stayed where it was.
    expect(await pooled(1)).toEqual(before);
  });
});
