/**
 * Job throughput: `print(1)` Python runs through the jobs API (POST /api/v1/jobs?wait=30 on a
 * listening server, a fresh sandbox and workspace per job) at client concurrency 2 and 4, the
 * server's jobConcurrency equal to it: runs/s and p50/p99 submit → final result. The floor,
 * measured in the same run: Node spawning the same sandboxed `python3 -I -S -c 'print(1)'`
 * directly through a BwrapSandbox (the jobs' limits, no HTTP, no store, no workspace) at the same
 * concurrency. Interleaved by phase, so both see the same machine.
 *
 *   node --import tsx bench/job-throughput.ts [runs]
 */
import { finished } from 'node:stream/promises';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { KERNEL_ENV } from '../src/kernels/kernel-driver.ts';
import { BwrapSandbox } from '../src/sandbox/bwrap-sandbox.ts';
import type { SandboxSpec } from '../src/sandbox/sandbox.ts';
import { benchDir, listenOnLoopback, log, met, quantile, report, type ResultRow } from './fixtures.ts';

const RUNS = Number(process.argv[2] ?? 500);
const CONCURRENCY = [2, 4];
/** Phases per path and concurrency; runcell and the floor alternate between them. */
const PHASES = 5;
const MiB = 1048576;

async function server(jobConcurrency: number) {
  const config = loadConfig({}, [], {
    dataDir: benchDir(),
    logLevel: 'silent',
    sandboxUidBase: 64900,
    // Keeps the server's uid range (maxKernels + jobConcurrency) below the floor's.
    maxKernels: 8,
    kernelPool: [],
    jobConcurrency,
    jobQueueSize: 1000,
  });
  const app = await buildApp(config);
  return { app, config, base: await listenOnLoopback(app) };
}

const sandbox = new BwrapSandbox({
  uidBase: 64950,
  uidCount: Math.max(...CONCURRENCY),
  instance: 'bench-job-floor',
  log,
});
await sandbox.init();

async function viaApi(base: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`${base}/api/v1/jobs?wait=30`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ language: 'python', code: 'print(1)' }),
  });
  const job = (await res.json()) as { state: string; stdout: string };
  if (job.state !== 'completed' || job.stdout !== '1\n')
    throw new Error(`job failed: ${JSON.stringify(job)}`);
  return performance.now() - t;
}

let floorRuns = 0;
async function viaSandbox(limits: SandboxSpec['limits'], network: boolean): Promise<number> {
  const t = performance.now();
  const proc = await sandbox.spawn({
    owner: `floor:${floorRuns++}`,
    argv: ['/usr/bin/python3', '-I', '-S', '-c', 'print(1)'],
    env: { ...KERNEL_ENV },
    limits,
    network,
  });
  let stdout = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.resume();
  // `exited` may settle before the last of stdout is read: wait for both.
  const [exit] = await Promise.all([proc.exited, finished(proc.stdout)]);
  if (exit.code !== 0 || stdout !== '1\n')
    throw new Error(`floor run failed: ${JSON.stringify({ exit, stdout })}`);
  return performance.now() - t;
}

/** `runs` calls of `once`, `concurrency` at a time; the latencies and the wall time. */
async function phase(runs: number, concurrency: number, once: () => Promise<number>) {
  const latencies: number[] = [];
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < runs) latencies.push(await once());
    }),
  );
  return { latencies, ms: performance.now() - t };
}

const lines: string[] = [];
const rows: ResultRow[] = [];
const command = ['bench/job-throughput.ts', ...process.argv.slice(2)].join(' ');
for (const concurrency of CONCURRENCY) {
  const { app, config, base } = await server(concurrency);
  // The jobs' sandbox settings (src/jobs/job-config.ts), for the floor.
  const limits = {
    memoryBytes: config.jobMemoryMb * MiB,
    maxProcesses: config.jobProcesses,
    tmpBytes: config.jobTmpMb * MiB,
    cpus: config.jobCpus,
    openFiles: config.kernelMaxOpenFiles,
    fileBytes: config.kernelMaxFileMb * MiB,
  };
  const paths = {
    runcell: () => viaApi(base),
    floor: () => viaSandbox(limits, config.sandboxNetwork),
  };
  for (const once of Object.values(paths)) await phase(2 * concurrency, concurrency, once); // warm up
  const totals = {
    runcell: { latencies: [] as number[], ms: 0 },
    floor: { latencies: [] as number[], ms: 0 },
  };
  for (let p = 0; p < PHASES; p++) {
    const runs = Math.floor(((p + 1) * RUNS) / PHASES) - Math.floor((p * RUNS) / PHASES);
    for (const [name, once] of Object.entries(paths) as [keyof typeof paths, () => Promise<number>][]) {
      const { latencies, ms } = await phase(runs, concurrency, once);
      totals[name].latencies.push(...latencies);
      totals[name].ms += ms;
    }
  }
  await app.close();
  const rate = (name: keyof typeof totals) => (totals[name].latencies.length / totals[name].ms) * 1000;
  const figures = (name: keyof typeof totals) => {
    const xs = totals[name].latencies;
    return `${rate(name).toFixed(1)} runs/s, p50 ${quantile(xs, 0.5).toFixed(1)} ms, p99 ${quantile(xs, 0.99).toFixed(1)} ms`;
  };
  const share = rate('runcell') / rate('floor');
  for (const name of ['runcell', 'floor'] as const)
    lines.push(
      `concurrency ${concurrency} ${(name === 'runcell' ? 'jobs API' : 'bwrap spawn (floor)').padEnd(20)} ${figures(name)}`,
    );
  lines.push(`concurrency ${concurrency} runcell / floor = ${share.toFixed(2)}× (target ≥ 0.85×)`);
  rows.push({
    benchmark: `jobs throughput: \`print(1)\` Python jobs, POST /api/v1/jobs?wait=30, client concurrency and jobConcurrency ${concurrency}, ${RUNS} runs per path (\`${command}\`)`,
    runcell: figures('runcell'),
    floor: `bwrap spawn of python3 -I -S: ${figures('floor')}`,
    ratio: `${share.toFixed(2)}× the floor (runs/s)`,
    target: `≥ 0.85× the floor: ${met(share >= 0.85)}`,
  });
}
await sandbox.close();
console.log(`runs: ${RUNS} per path and concurrency, print(1), ${PHASES} interleaved phases each`);
for (const line of lines) console.log(line);
report(...rows);
