/**
 * Per-language kernel figures, in one run: cold start (Kernel.start → ready, every sandbox
 * control on) and the warm round trip of a trivial cell over the kernel's pipe, for every
 * stateful runtime this machine offers. Absolute figures; compare languages within one run.
 *
 *   node --import tsx bench/languages.ts [starts] [cells]
 */
import { join } from 'node:path';
import { loadConfig } from '../src/config.ts';
import { discoverKernels } from '../src/engine/runtimes.ts';
import { Kernel } from '../src/kernels/kernel.ts';
import { BwrapSandbox } from '../src/sandbox/bwrap-sandbox.ts';
import {
  benchDir,
  KERNEL_LIMITS,
  log,
  medianP99,
  report,
  WORKSPACE_QUOTA,
  type ResultRow,
} from './fixtures.ts';

const STARTS = Number(process.argv[2] ?? 5);
const CELLS = Number(process.argv[3] ?? 100);
const TRIVIAL: Record<string, string> = {
  python: '1 + 1',
  javascript: '1 + 1',
  typescript: '1 + 1',
  bash: 'echo 2',
  java: '1 + 1',
  'jupyter:python3': '1 + 1',
};

const root = benchDir();
const { runtimes, drivers } = await discoverKernels(loadConfig({}, [], {}), join(root, 'drivers'), log);
const sandbox = new BwrapSandbox({ uidBase: 64800, uidCount: 4, instance: 'bench-languages', log });
await sandbox.init();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p99 = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))]!;
const exec = { timeoutMs: 30_000, cpuTimeMs: 0, cpuCores: 1, graceMs: 2000, maxOutputBytes: 1 << 20 };

console.log(`starts: ${STARTS}, warm cells: ${CELLS}`);
const command = ['bench/languages.ts', ...process.argv.slice(2)].join(' ');
const rows: ResultRow[] = [];
/** Python's medians, the first runtime's: the other languages are compared with them. */
let python: { start: number; warm: number } | undefined;
for (const runtime of runtimes.filter((r) => r.stateful)) {
  const driver = drivers[runtime.kernel!]!;
  const code = TRIVIAL[runtime.language] ?? TRIVIAL[runtime.language.split('@')[0]!];
  if (!code) continue;
  await driver.prepare?.(); // one-time compilation (Java) is not a start
  const starts: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < STARTS; i++) {
    const id = `${runtime.kernel!.replace(/[:@]/g, '-')}-${i}`;
    const t = performance.now();
    const kernel = await Kernel.start(sandbox, driver, {
      notebookId: id,
      workspace: join(root, id),
      workspaceQuota: WORKSPACE_QUOTA,
      limits: KERNEL_LIMITS,
      network: false,
      log,
    });
    starts.push(performance.now() - t);
    if (i === STARTS - 1) {
      for (let c = 0; c < CELLS; c++) {
        const s = performance.now();
        const r = await kernel.execute(code, exec);
        if (r.outcome.status !== 'ok') throw new Error(`${runtime.kernel}: ${JSON.stringify(r.outcome)}`);
        warm.push(performance.now() - s);
      }
    }
    await kernel.kill();
    await new Promise((resolve) => setTimeout(resolve, 300)); // the next spare volume
  }
  console.log(
    `${`${runtime.kernel} (${runtime.version})`.padEnd(34)} cold start median ${median(starts).toFixed(0)} ms; warm \`${code}\` median ${median(warm).toFixed(2)} ms, p99 ${p99(warm).toFixed(2)} ms`,
  );
  const figures = { start: median(starts), warm: median(warm) };
  if (runtime.language === 'python') python ??= figures;
  rows.push({
    benchmark: `${runtime.kernel} (${runtime.version}) kernel: cold start (Kernel.start → ready, every control, ${STARTS} starts) and warm \`${code}\` over its pipe (${CELLS} cells) (\`${command}\`)`,
    runcell: `cold start median ${figures.start.toFixed(0)} ms; warm ${medianP99(warm)}`,
    ratio:
      python && runtime.language !== 'python'
        ? `${(figures.start / python.start).toFixed(2)}× Python's cold start, ${(figures.warm / python.warm).toFixed(2)}× its warm cell (median)`
        : undefined,
  });
}
await sandbox.close();
report(...rows);
