/**
 * Density: N idle Python notebooks (one cell run in each), with the server's defaults (each in
 * its own sandbox, cgroup, uid and workspace volume). Reports the proportional memory (PSS) per
 * idle notebook, summed over every process of the sandboxes (bwrap, the kernel and its threads),
 * and the warm latency of one active notebook (POST submit + long-poll status) while the others
 * sit idle, for growing N in one run, so the p99 at the largest N compares with the smallest.
 *
 *   node --import tsx bench/density.ts [counts, e.g. 10,100,500] [warm cells]
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import {
  benchDir,
  listenOnLoopback,
  medianP99,
  met,
  quantile,
  report,
  type ResultRow,
  timedCell,
} from './fixtures.ts';

const COUNTS = (process.argv[2] ?? '1,10,100,500').split(',').map(Number);
const WARM_CELLS = Number(process.argv[3] ?? 200);
const UID_BASE = 66000;
const MAX = Math.max(...COUNTS) + 2; // the notebooks, and the active one

const app = await buildApp(
  loadConfig({}, [], {
    dataDir: benchDir(),
    logLevel: 'silent',
    sandboxUidBase: UID_BASE,
    maxKernels: MAX,
    kernelPool: [],
    cullIdleSeconds: 0,
  }),
);
const base = await listenOnLoopback(app);

const cell = (notebookId: string, code: string) => timedCell(base, notebookId, code);

/** PSS (kB) of every process run by the sandbox uids, and how many processes that is. */
function sandboxPss(): { kb: number; processes: number } {
  let kb = 0;
  let processes = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const uid = statSync(`/proc/${pid}`).uid;
      if (uid < UID_BASE || uid >= UID_BASE + MAX + 8) continue;
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      kb += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      processes++;
    } catch {
      // exited meanwhile
    }
  }
  return { kb, processes };
}

await cell('active', 'x = 0');
let started = 0;
const rows: string[] = [];
let firstP99: number | undefined;
const command = ['bench/density.ts', ...process.argv.slice(2)].join(' ');
const results: ResultRow[] = [];
for (const count of COUNTS) {
  // Start the notebooks up to `count`, 8 at a time.
  const startedAt = performance.now();
  while (started < count) {
    const batch = Array.from({ length: Math.min(8, count - started) }, (_, i) => `idle-${started + i}`);
    await Promise.all(batch.map((nb) => cell(nb, 'x = 1')));
    started += batch.length;
  }
  const startSeconds = (performance.now() - startedAt) / 1000;
  await new Promise((resolve) => setTimeout(resolve, 2000)); // let them settle idle
  const active = sandboxPss();
  const warm: number[] = [];
  for (let i = 0; i < WARM_CELLS; i++) warm.push(await cell('active', 'x += 1'));
  const p99 = quantile(warm, 0.99);
  firstP99 ??= p99;
  // Everything but the active notebook's kernel is idle: PSS per notebook over all of them.
  const perNotebook = active.kb / 1024 / (count + 1);
  rows.push(
    `${String(count).padStart(5)} idle  ${perNotebook.toFixed(2).padStart(6)} MiB each (${active.processes} processes)  warm median ${quantile(warm, 0.5).toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (${(p99 / firstP99).toFixed(2)}× the first p99)  [started in ${startSeconds.toFixed(1)} s]`,
  );
  console.log(rows.at(-1));
  const fewest = count === COUNTS[0];
  results.push({
    benchmark: `density: ${count} idle Python notebooks (one cell run in each), PSS per idle notebook over every sandbox process, and ${WARM_CELLS} warm \`x += 1\` cells of an active one (POST submit + long-poll status) (\`${command}\`)`,
    runcell: `${perNotebook.toFixed(2)} MiB PSS each; warm ${medianP99(warm)}`,
    ratio: fewest ? undefined : `warm p99 ${(p99 / firstP99).toFixed(2)}× the p99 with ${COUNTS[0]} idle`,
    target: fewest
      ? `≤ 8 MiB PSS per idle notebook: ${met(perNotebook <= 8)}`
      : `≤ 8 MiB PSS per idle notebook: ${met(perNotebook <= 8)}; warm p99 ≤ 1.2× the p99 with ${COUNTS[0]} idle: ${met(p99 <= 1.2 * firstP99)}`,
  });
}
await app.close();
report(...results);
