/** The mount helper: one root process answering mount requests in order. */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MountHelper } from '../../src/sandbox/mount-helper.ts';
import { tempDir } from '../helpers.ts';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

describe.runIf(isRoot)('MountHelper', () => {
  it('mounts, binds and detaches, and says why a request failed', async () => {
    const helper = new MountHelper();
    const dir = tempDir();
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    mkdirSync(a);
    mkdirSync(b);
    try {
      await helper.tmpfs(a, 1 << 20, 100);
      await helper.bind(a, b);
      const mounts = readFileSync('/proc/self/mounts', 'utf8');
      expect(mounts).toContain(` ${a} tmpfs `);
      expect(mounts).toContain(` ${b} tmpfs `);
      await helper.umount(b);
      await helper.umount(a);
      expect(readFileSync('/proc/self/mounts', 'utf8')).not.toContain(` ${a} `);
      await expect(helper.umount(join(dir, 'missing'))).rejects.toThrow(/mount helper/);
    } finally {
      helper.close();
    }
  });

  it('still answers after close(), without keeping the server process alive', async () => {
    // A kernel that ends after shutdown detaches its volume through a closed helper: the
    // process must exit all the same.
    const script =
      "import { MountHelper } from './src/sandbox/mount-helper.ts';" +
      'const h = new MountHelper(); h.close();' +
      "await h.umount('/nonexistent-runcell').catch((e) => console.log('answered:', e.message));";
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      timeout: 20_000,
    });
    expect(stdout).toMatch(/^answered: mount helper/);
  });
});
