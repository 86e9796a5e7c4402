/**
 * The benchmark harness still runs (benchmarks themselves are not run in CI): a few rounds of
 * the quick ones, which must finish and print their figures.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('bench harness', () => {
  it.each([
    ['bench/warm-cell.ts', '6', /websocket\s+median/],
    ['bench/kernel-cold-start.ts', '2', /every control \(ready\)/],
  ])(
    '%s runs',
    async (file, rounds, expected) => {
      // Not vitest's environment (its NODE_OPTIONS and workers' variables): the bench's own.
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' };
      const { stdout } = await run(process.execPath, ['--import', 'tsx', file, rounds], {
        env,
        timeout: 120_000,
      });
      expect(stdout).toMatch(expected);
    },
    150_000,
  );
});
