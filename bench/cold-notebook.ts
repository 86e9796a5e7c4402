/**
 * Cold notebook: a new notebook's first cell, `print(1)`, submit → result (POST /api/submit +
 * long-poll status), with the warm pool (config kernelPool python=1) and without it (the kernel
 * is started for the cell), against a warm cell of an existing notebook of the same server as
 * the floor. Interleaved in one run; before each pooled round the pool is given time to refill,
 * as it has between notebooks that do not arrive all at once.
 *
 *   node --import tsx bench/cold-notebook.ts [notebooks]
 */
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { benchDir, listenOnLoopback, medianP99, met, report, timedCell } from './fixtures.ts';

const ROUNDS = Number(process.argv[2] ?? 50);
const PAUSE_MS = 600;

async function server(kernelPool: string[], sandboxUidBase: number) {
  const app = await buildApp(
    loadConfig({}, [], {
      dataDir: benchDir(),
      logLevel: 'silent',
      kernelPool,
      sandboxUidBase,
      maxKernels: 8,
    }),
  );
  return { app, base: await listenOnLoopback(app) };
}

const firstCell = (base: string, notebookId: string) => timedCell(base, notebookId, 'print(1)');

async function poolFull(app: FastifyInstance): Promise<void> {
  while ((await app.inject('/healthz')).json().pooledKernels < 1) await new Promise((r) => setTimeout(r, 5));
}

const pooled = await server(['python=1'], 64500);
const unpooled = await server([], 64600);
await firstCell(pooled.base, 'warm'); // the floor's notebook, started once

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p99 = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;
const fromPool: number[] = [];
const started: number[] = [];
const warm: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  await poolFull(pooled.app);
  fromPool.push(await firstCell(pooled.base, `new-${i}`));
  started.push(await firstCell(unpooled.base, `new-${i}`));
  warm.push(await firstCell(pooled.base, 'warm'));
  // Keep the machine's kernel count flat: these notebooks are done.
  await Promise.all([
    pooled.app.inject({ method: 'POST', url: `/api/reset/new-${i}` }),
    unpooled.app.inject({ method: 'POST', url: `/api/reset/new-${i}` }),
  ]);
  // Notebooks that do not all arrive at once: the background work of this round (the pool's
  // refill, the next spare volume) is done before the next.
  await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
}
await Promise.all([pooled.app.close(), unpooled.app.close()]);

const line = (name: string, xs: number[]) =>
  console.log(`${name.padEnd(44)} median ${median(xs).toFixed(2)} ms, p99 ${p99(xs).toFixed(2)} ms`);
console.log(`notebooks: ${ROUNDS}, interleaved, ${PAUSE_MS} ms apart`);
line('new notebook, kernel from the pool', fromPool);
line('new notebook, kernel started for it', started);
line('existing notebook, warm kernel (floor)', warm);
console.log(
  `pool / warm = ${(median(fromPool) / median(warm)).toFixed(2)}; started / warm = ${(median(started) / median(warm)).toFixed(2)}`,
);
const command = ['bench/cold-notebook.ts', ...process.argv.slice(2)].join(' ');
const coldRow = (how: string, xs: number[], limitMs: number) => ({
  benchmark: `cold notebook: a new notebook's first cell \`print(1)\`, ${how}, POST submit + long-poll status, ${ROUNDS} notebooks (\`${command}\`)`,
  runcell: medianP99(xs),
  floor: `warm cell of an existing notebook: ${medianP99(warm)}`,
  ratio: `${(median(xs) / median(warm)).toFixed(2)}× the warm cell (median)`,
  target: `median ≤ ${limitMs} ms: ${met(median(xs) <= limitMs)}`,
});
report(
  coldRow('kernel from the warm pool', fromPool, 5),
  coldRow('kernel started for it (no pool)', started, 50),
);
