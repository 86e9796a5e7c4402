/**
 * `npm run bench`: every benchmark in turn, each in a process of its own with a clean
 * environment, then the table of their results written into BENCHMARKS.md (between the
 * `results` markers) with the run's date, machine and durations.
 *
 *   node --import tsx bench/run-all.ts [--smoke] [name ...]
 *
 * Names run a subset; --smoke runs each with a few rounds (CI's check that the harness works).
 * Either way the table is printed but BENCHMARKS.md is left alone.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { ResultRow } from './fixtures.ts';

/** Arguments as the issue sizes them; the whole suite stays under 15 minutes on 2 cores. */
const SUITE: { name: string; args: string[]; smoke: string[] }[] = [
  { name: 'warm-cell', args: ['1000'], smoke: ['6'] },
  { name: 'stream-latency', args: ['30', '1000000', '2'], smoke: ['2', '2000', '1'] },
  { name: 'kernel-cold-start', args: ['40'], smoke: ['2'] },
  { name: 'cold-notebook', args: ['50'], smoke: ['2'] },
  { name: 'languages', args: ['5', '100'], smoke: ['1', '3'] },
  { name: 'js-repl-mode', args: [], smoke: [] },
  { name: 'job-throughput', args: ['300'], smoke: ['4'] },
  { name: 'jupyter-peer', args: ['1000', '50', '10'], smoke: ['5', '1', '1'] },
  { name: 'density', args: ['1,10,100,500', '200'], smoke: ['2', '5'] },
  { name: 'notebook-throughput', args: ['100', '20', '1'], smoke: ['3', '3', '1'] },
];
/** A benchmark still running after this is stopped and reported as such. */
const TIMEOUT_MS = 6 * 60_000;
const MARK_BEGIN = '<!-- results:begin (written by npm run bench) -->';
const MARK_END = '<!-- results:end -->';

const smoke = process.argv.includes('--smoke');
const only = process.argv.slice(2).filter((arg) => arg !== '--smoke');
const unknown = only.filter((name) => !SUITE.some((b) => b.name === name));
if (unknown.length > 0) {
  console.error(`unknown benchmark: ${unknown.join(', ')} (known: ${SUITE.map((b) => b.name).join(', ')})`);
  process.exit(2);
}
const suite = only.length > 0 ? SUITE.filter((b) => only.includes(b.name)) : SUITE;

/** The benchmarks' environment: nothing of this shell's (PYTHON* variables, pyenv's python first on PATH). */
const PATH = (process.env.PATH ?? '/usr/bin:/bin')
  .split(':')
  .filter((dir) => dir && !dir.includes('pyenv'))
  .join(':');

interface Ran {
  name: string;
  command: string;
  seconds: number;
  outcome: string;
  rows: ResultRow[];
}

async function run(name: string, args: string[]): Promise<Ran> {
  const dir = mkdtempSync(join(tmpdir(), 'runcell-bench-results-'));
  const file = join(dir, 'rows.jsonl');
  const command = ['bench/' + name + '.ts', ...args].join(' ');
  console.log(`\n== ${command}`);
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', `bench/${name}.ts`, ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { PATH, HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8', RUNCELL_BENCH_RESULTS: file },
    detached: true, // its own process group: a timeout stops what it started too
  });
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, TIMEOUT_MS);
  const { code, signal } = await new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  const rows = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as ResultRow)
    : [];
  rmSync(dir, { recursive: true, force: true });
  const outcome =
    code === 0
      ? 'ok'
      : signal === 'SIGKILL'
        ? `stopped after ${TIMEOUT_MS / 60_000} min`
        : `failed (${code ?? signal})`;
  return { name, command, seconds, outcome, rows };
}

const started = performance.now();
const ran: Ran[] = [];
for (const b of suite) ran.push(await run(b.name, smoke ? b.smoke : b.args));
const totalSeconds = (performance.now() - started) / 1000;

const cell = (text: string | undefined) => (text ?? '').replaceAll('|', '\\|').replaceAll('\n', ' ');
const minutes = (s: number) => `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
const lines = [
  MARK_BEGIN,
  `Last \`npm run bench\`: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ` +
    `${availableParallelism()} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.versions.node}; ` +
    `${minutes(totalSeconds)} in all.`,
  '',
  '| benchmark | runcell | floor | Jupyter (ipykernel) | ratio | target |',
  '| --- | --- | --- | --- | --- | --- |',
  ...ran.flatMap((r) =>
    r.rows.length > 0
      ? r.rows.map(
          (row) =>
            `| ${cell(row.benchmark)} | ${cell(row.runcell)} | ${cell(row.floor)} | ${cell(row.peer)} | ` +
            `${cell(row.ratio)} | ${cell(row.target)} |`,
        )
      : [`| \`${r.command}\` | ${r.outcome}: no figures | | | | |`],
  ),
  '',
  'Time per benchmark: ' +
    ran
      .map((r) => `${r.name} ${Math.round(r.seconds)} s${r.outcome === 'ok' ? '' : ` (${r.outcome})`}`)
      .join(', ') +
    '.',
  MARK_END,
];
const table = lines.join('\n');
console.log('\n' + table);

if (only.length === 0 && !smoke) {
  const path = new URL('../BENCHMARKS.md', import.meta.url);
  const doc = readFileSync(path, 'utf8');
  const begin = doc.indexOf(MARK_BEGIN);
  const end = doc.indexOf(MARK_END);
  const next =
    begin >= 0 && end > begin
      ? doc.slice(0, begin) + table + doc.slice(end + MARK_END.length)
      : doc.replace(/\n/, `\n\n${table}\n`); // after the title
  writeFileSync(path, next);
  console.log(`\nBENCHMARKS.md: table written (${minutes(totalSeconds)})`);
}
process.exitCode = ran.every((r) => r.outcome === 'ok') ? 0 : 1;
