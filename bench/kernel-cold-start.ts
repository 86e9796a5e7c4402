/**
 * Cold start of a Python kernel for a new notebook with every sandbox control on (pool uid,
 * cgroups, rlimits, seccomp, namespaces, read-only root, its own workspace volume, the driver up
 * to its ready frame, then a first `print(1)` cell), against floors, all interleaved in one run:
 *  - bare: `bwrap python3 -I` printing one byte (the interpreter alone, with its site start-up);
 *  - bare -S: the same without site (the driver skips site: see driver.py);
 *  - bare + driver: the same bwrap running runcell's driver up to its ready frame, so
 *    full / (bare + driver) is what the sandbox controls cost.
 * Each new notebook's volume is the spare made ahead (workspace-volume.ts); after a start the
 * next spare is made in the background, so rounds are PAUSE_MS apart, as notebooks that do not
 * all arrive at once are (at a higher rate, starts also share the CPU with that formatting).
 *
 *   node --import tsx bench/kernel-cold-start.ts [rounds]
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { BwrapSandbox } from '../src/sandbox/bwrap-sandbox.ts';
import { benchDir, log, medianP99, python, report, startPythonKernel } from './fixtures.ts';

const ROUNDS = Number(process.argv[2] ?? 40);
const PAUSE_MS = 500;
const root = benchDir();

const BWRAP = [
  '/usr/bin/bwrap',
  '--unshare-all',
  '--die-with-parent',
  '--ro-bind',
  '/usr',
  '/usr',
  '--symlink',
  'usr/lib',
  '/lib',
  '--symlink',
  'usr/lib64',
  '/lib64',
  '--symlink',
  'usr/bin',
  '/bin',
  '--proc',
  '/proc',
  '--dev',
  '/dev',
  '--',
];
const PRINT = "import os; os.write(1, b'r')";

function firstByte(argv: string[]): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env: {} });
    child.stdout.once('data', () => resolve(performance.now() - started));
    child.once('error', reject);
  });
}

await python.prepare();
const BARE_DRIVER = [...BWRAP, ...python.argv({ memoryBytes: 512 << 20 })];
function bareDriver(): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(BARE_DRIVER[0]!, BARE_DRIVER.slice(1), {
      stdio: ['pipe', 'ignore', 'inherit', 'pipe', 'pipe'],
      env: {},
    });
    child.stdin!.end(python.stdin());
    (child.stdio[4] as NodeJS.ReadableStream).once('data', () => {
      resolve(performance.now() - started);
      child.kill('SIGKILL');
    });
    child.once('error', reject);
  });
}

const sandbox = new BwrapSandbox({ uidBase: 64000, uidCount: 4, instance: 'bench', log });
await sandbox.init();
async function full(i: number): Promise<[number, number]> {
  const started = performance.now();
  const kernel = await startPythonKernel(sandbox, `bench-${i}`, join(root, `ws-${i}`));
  const ready = performance.now() - started;
  const run = await kernel.execute('print(1)', {
    timeoutMs: 10_000,
    cpuTimeMs: 0,
    cpuCores: 1,
    graceMs: 1000,
    maxOutputBytes: 1 << 20,
  });
  const firstCell = performance.now() - started;
  if (run.outcome.status !== 'ok') throw new Error(`first cell failed: ${JSON.stringify(run.outcome)}`);
  await kernel.kill();
  return [ready, firstCell];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const bares: number[] = [];
const baresNoSite: number[] = [];
const bareDrivers: number[] = [];
const readies: number[] = [];
const firstCells: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  bares.push(await firstByte([...BWRAP, '/usr/bin/python3', '-I', '-c', PRINT]));
  baresNoSite.push(await firstByte([...BWRAP, '/usr/bin/python3', '-I', '-S', '-c', PRINT]));
  bareDrivers.push(await bareDriver());
  const [ready, firstCell] = await full(i);
  readies.push(ready);
  firstCells.push(firstCell);
  await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
}
await sandbox.close();
const [b, s, d, r, c] = [bares, baresNoSite, bareDrivers, readies, firstCells].map(median) as number[];
const ratio = (x: number, y: number) => (x / y).toFixed(2);
console.log(`rounds: ${ROUNDS}, interleaved; a new notebook each round, ${PAUSE_MS} ms apart`);
console.log(`bare bwrap python3 -I (first byte):              median ${b!.toFixed(1)} ms`);
console.log(`bare bwrap python3 -I -S (first byte):           median ${s!.toFixed(1)} ms`);
console.log(`bare bwrap + runcell driver (ready frame):       median ${d!.toFixed(1)} ms`);
console.log(`runcell kernel, every control (ready):           median ${r!.toFixed(1)} ms`);
console.log(`runcell kernel, every control (print(1) result): median ${c!.toFixed(1)} ms`);
console.log(`ready / bare python3 = ${ratio(r!, b!)}; ready / bare -S = ${ratio(r!, s!)}`);
console.log(
  `first cell / bare python3 = ${ratio(c!, b!)}; controls: ready / (bare + driver) = ${ratio(r!, d!)}`,
);
const command = ['bench/kernel-cold-start.ts', ...process.argv.slice(2)].join(' ');
const floors =
  `bare bwrap python3 -I first byte median ${b!.toFixed(1)} ms; -I -S median ${s!.toFixed(1)} ms; ` +
  `bare + runcell driver ready median ${d!.toFixed(1)} ms`;
report(
  {
    benchmark: `Python kernel cold start, every sandbox control, Kernel.start → ready frame, ${ROUNDS} new notebooks (\`${command}\`)`,
    runcell: medianP99(readies, 1),
    floor: floors,
    ratio: `${ratio(r!, b!)}× bare python3 -I, ${ratio(r!, s!)}× bare -S; controls: ${ratio(r!, d!)}× bare + driver (median)`,
  },
  {
    benchmark: `Python kernel cold start, every sandbox control, Kernel.start → first \`print(1)\` result, ${ROUNDS} new notebooks (\`${command}\`)`,
    runcell: medianP99(firstCells, 1),
    floor: floors,
    ratio: `${ratio(c!, b!)}× bare python3 -I (median)`,
  },
);
