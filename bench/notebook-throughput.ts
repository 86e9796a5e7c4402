/**
 * Throughput under concurrency: N notebooks each submit C cells at once (C separate POST
 * /api/submit of `n += 1; print(n)`, sent back to back without waiting for results, so each
 * notebook's submission order is the order its 202s came back), all notebooks concurrently;
 * then every submission is long-polled to final. Reports cells/s (N × C / wall time) and
 * submit → final latency, and proves that nothing was lost, duplicated or reordered: each
 * notebook's outputs are exactly the next C integers in its submission order. The floor is the
 * same cells driven straight into N sandboxed kernels over their pipes (no HTTP, no store, no
 * queue), each kernel's cells in sequence, all kernels concurrently. Interleaved for a few
 * rounds in one run; the kernels are started (n = 0) beforehand, untimed, 8 at a time.
 *
 *   node --import tsx bench/notebook-throughput.ts [notebooks] [cells] [rounds]
 */
import { join } from 'node:path';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import type { Kernel } from '../src/kernels/kernel.ts';
import { BwrapSandbox } from '../src/sandbox/bwrap-sandbox.ts';
import { benchDir, listenOnLoopback, log, met, quantile, report, startPythonKernel } from './fixtures.ts';

const NOTEBOOKS = Number(process.argv[2] ?? 100);
const CELLS = Number(process.argv[3] ?? 20);
const ROUNDS = Number(process.argv[4] ?? 3);
const START_PARALLELISM = 8;
const UID_BASE = 67000;

const dataDir = benchDir();
const config = loadConfig(process.env, [], {
  dataDir,
  logLevel: 'silent',
  sandboxUidBase: UID_BASE,
  maxKernels: NOTEBOOKS + 8,
  kernelPool: [],
});
const app = await buildApp(config);
const base = await listenOnLoopback(app);

interface Status {
  status: string;
  state: string;
  results: { type: string; output: string }[];
}

async function submit(notebookId: string, code: string): Promise<string> {
  const res = await fetch(`${base}/api/submit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ notebookId, cells: [{ cellId: 'c', code }] }),
  });
  if (res.status !== 202) throw new Error(`submit failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { submissionId: string }).submissionId;
}

async function final(submissionId: string): Promise<Status> {
  for (;;) {
    const status = (await (await fetch(`${base}/api/status/${submissionId}?wait=30`)).json()) as Status;
    if (status.status !== 'pending') return status;
  }
}

/** Runs `jobs` with at most `limit` at a time. */
async function limited<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return out;
}

const notebooks = Array.from({ length: NOTEBOOKS }, (_, i) => `nb-${i}`);

/** Every cell lost, duplicated or reordered, per path: the verdict the benchmark reports. */
const problems = { runcell: [] as string[], floor: [] as string[] };

/** Checks a notebook's outputs are the next CELLS integers after `done`, in order. */
function verify(path: keyof typeof problems, name: string, outputs: string[], done: number): void {
  const expected = Array.from({ length: CELLS }, (_, k) => `${done + k + 1}\n`);
  if (outputs.join('') !== expected.join(''))
    problems[path].push(`${name}: outputs ${JSON.stringify(outputs)}, expected ${JSON.stringify(expected)}`);
}

async function runcellRound(done: number) {
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    notebooks.map(async (notebookId) => {
      const sent: { id: string; at: number }[] = [];
      for (let k = 0; k < CELLS; k++) {
        const at = performance.now();
        sent.push({ id: await submit(notebookId, 'n += 1; print(n)'), at });
      }
      if (new Set(sent.map((s) => s.id)).size !== CELLS)
        problems.runcell.push(`${notebookId}: duplicate ids`);
      const outputs = await Promise.all(
        sent.map(async ({ id, at }) => {
          const status = await final(id);
          latencies.push(performance.now() - at);
          if (status.state !== 'success' || status.results.length !== 1) {
            problems.runcell.push(`${notebookId}: ${JSON.stringify(status)}`);
            return `(${status.state})`;
          }
          return status.results[0]!.output;
        }),
      );
      verify('runcell', notebookId, outputs, done);
    }),
  );
  return { wallMs: performance.now() - t0, latencies };
}

const sandbox = new BwrapSandbox({
  uidBase: UID_BASE + NOTEBOOKS + 32, // past runcell's kernels, pool and job uids
  uidCount: NOTEBOOKS,
  instance: 'bench-throughput',
  log,
});
await sandbox.init();
const EXEC = { timeoutMs: 30_000, cpuTimeMs: 0, cpuCores: 1, graceMs: 1000, maxOutputBytes: 1 << 20 };
const stdout = (r: Awaited<ReturnType<Kernel['execute']>>) =>
  r.output.outputs.map((o) => (o.output_type === 'stream' ? o.text : '')).join('');

async function floorRound(kernels: Kernel[], done: number) {
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    kernels.map(async (kernel, i) => {
      const outputs: string[] = [];
      // A kernel runs one cell at a time: all are "submitted" at t0 and queue behind each other.
      for (let k = 0; k < CELLS; k++) {
        const r = await kernel.execute('n += 1; print(n)', EXEC);
        if (r.outcome.status !== 'ok') throw new Error(`floor ${i}: ${JSON.stringify(r.outcome)}`);
        outputs.push(stdout(r));
        latencies.push(performance.now() - t0);
      }
      verify('floor', `floor ${i}`, outputs, done);
    }),
  );
  return { wallMs: performance.now() - t0, latencies };
}

// Phase 1, untimed: every notebook's kernel started, n = 0.
await limited(
  notebooks.map((notebookId) => async () => {
    const status = await final(await submit(notebookId, 'n = 0'));
    if (status.state !== 'success') throw new Error(`${notebookId}: ${JSON.stringify(status)}`);
  }),
  START_PARALLELISM,
);
const kernels = await limited(
  notebooks.map((notebookId) => async () => {
    const kernel = await startPythonKernel(sandbox, notebookId, join(dataDir, `floor-${notebookId}`));
    await kernel.execute('n = 0', EXEC);
    return kernel;
  }),
  START_PARALLELISM,
);

// Phase 2, timed, interleaved (the order alternates so drift in the machine's load is shared).
const rounds = { runcell: [] as number[], floor: [] as number[] };
const latency = { runcell: [] as number[], floor: [] as number[] };
for (let r = 0; r < ROUNDS; r++) {
  const done = r * CELLS;
  const order = r % 2 === 0 ? (['runcell', 'floor'] as const) : (['floor', 'runcell'] as const);
  for (const path of order) {
    const { wallMs, latencies } =
      path === 'runcell' ? await runcellRound(done) : await floorRound(kernels, done);
    rounds[path].push((NOTEBOOKS * CELLS) / (wallMs / 1000));
    latency[path].push(...latencies);
  }
}
await Promise.all(kernels.map((k) => k.kill()));
await sandbox.close();
await app.close();

console.log(
  `notebooks: ${NOTEBOOKS} × ${CELLS} cells at once, ${ROUNDS} rounds interleaved, ` +
    `maxConcurrentNotebooks ${config.maxConcurrentNotebooks}`,
);
const intact = (path: keyof typeof problems) => problems[path].length === 0;
if (intact('runcell') && intact('floor'))
  console.log(
    `verified: ${NOTEBOOKS * CELLS * ROUNDS} cells per path, each notebook's outputs exactly ` +
      `1..${CELLS * ROUNDS} in submission order (none lost, duplicated or reordered)`,
  );
for (const path of ['runcell', 'floor'] as const)
  for (const problem of problems[path].slice(0, 10)) console.log(`NOT VERIFIED ${path}: ${problem}`);
for (const path of ['runcell', 'floor'] as const) {
  const xs = latency[path];
  console.log(
    `${path.padEnd(8)} ${quantile(rounds[path], 0.5).toFixed(0)} cells/s (median round), ` +
      `submit → final p50 ${quantile(xs, 0.5).toFixed(1)} ms, p99 ${quantile(xs, 0.99).toFixed(1)} ms`,
  );
}
const share = quantile(rounds.runcell, 0.5) / quantile(rounds.floor, 0.5);
console.log(`runcell / floor throughput = ${share.toFixed(2)}`);
const command = ['bench/notebook-throughput.ts', ...process.argv.slice(2)].join(' ');
const figures = (path: keyof typeof rounds) =>
  `${quantile(rounds[path], 0.5).toFixed(0)} cells/s (median round), submit → final ` +
  `p50 ${quantile(latency[path], 0.5).toFixed(1)} ms, p99 ${quantile(latency[path], 0.99).toFixed(1)} ms`;
const verdict = (path: keyof typeof problems) =>
  met(intact(path)) + (intact(path) ? '' : ` (${problems[path].length} problems, printed above)`);
report({
  benchmark: `throughput under concurrency: ${NOTEBOOKS} notebooks × ${CELLS} \`n += 1; print(n)\` cells submitted at once (POST /api/submit each, then long-poll), ${ROUNDS} rounds (\`${command}\`)`,
  runcell: figures('runcell'),
  floor: `the same cells into ${NOTEBOOKS} kernels over their pipes: ${figures('floor')}`,
  ratio: `${share.toFixed(2)}× the floor's cells/s`,
  target: `no cell lost, duplicated or reordered (${NOTEBOOKS * CELLS * ROUNDS} checked): runcell ${verdict('runcell')}, floor ${verdict('floor')}`,
});
if (!intact('runcell') || !intact('floor')) process.exitCode = 1;
