/**
 * The benchmark harness still runs (benchmarks themselves are not run in CI): `bench/run-all.ts
 * --smoke` runs the quick ones for a few rounds, each of which must finish and hand its rows to
 * the table.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('bench harness', () => {
  it('runs benchmarks and writes their rows into the table', async () => {
    // Not vitest's environment (its NODE_OPTIONS and workers' variables): the bench's own.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' };
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'bench/run-all.ts', '--smoke', 'warm-cell', 'kernel-cold-start', 'stream-latency'],
      { env, timeout: 200_000 },
    );
    const table = stdout.slice(stdout.indexOf('| benchmark |'));
    const rows = table.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| benchmark'));
    expect(rows.find((r) => r.includes('bench/warm-cell.ts 6'))).toMatch(/median [\d.]+ ms/);
    expect(rows.find((r) => r.includes('bench/kernel-cold-start.ts 2'))).toMatch(/median [\d.]+ ms/);
    expect(rows.find((r) => r.includes('flood of 2000 lines'))).toMatch(/lines\/s/);
    expect(rows.some((r) => r.includes('no figures'))).toBe(false);
    expect(table).toMatch(
      /Time per benchmark: warm-cell \d+ s, stream-latency \d+ s, kernel-cold-start \d+ s\./,
    );
  }, 240_000);
});
