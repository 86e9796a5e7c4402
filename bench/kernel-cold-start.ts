/**
 * Cold start of a Python kernel with every sandbox control on (pool uid, cgroups, rlimits,
 * namespaces, read-only root, the driver up to its ready frame), against two floors, all
 * interleaved in one run:
 *  - bare: `bwrap python3` printing one byte (the interpreter alone);
 *  - bare + driver: the same bwrap running runcell's driver up to its ready frame, so the
 *    ratio full / (bare + driver) is what the sandbox controls cost.
 *
 *   node --import tsx bench/kernel-cold-start.ts [rounds]
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { BwrapSandbox } from '../src/sandbox/bwrap-sandbox.ts';
import { benchDir, log, python, startPythonKernel } from './fixtures.ts';

const ROUNDS = Number(process.argv[2] ?? 40);
const root = benchDir();

const BARE = [
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
  '/usr/bin/python3',
  '-I',
  '-c',
  "import os; os.write(1, b'r')",
];

function bare(): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(BARE[0]!, BARE.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env: {} });
    child.stdout.once('data', () => resolve(performance.now() - started));
    child.once('error', reject);
  });
}

const BARE_DRIVER = [...BARE.slice(0, BARE.indexOf('--') + 1), ...python.argv({ memoryBytes: 512 << 20 })];
function bareDriver(): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(BARE_DRIVER[0]!, BARE_DRIVER.slice(1), {
      stdio: ['ignore', 'ignore', 'inherit', 'pipe', 'pipe'],
      env: {},
    });
    (child.stdio[4] as NodeJS.ReadableStream).once('data', () => {
      resolve(performance.now() - started);
      child.kill('SIGKILL');
    });
    child.once('error', reject);
  });
}

const sandbox = new BwrapSandbox({ uidBase: 64000, uidCount: 4, instance: 'bench', log });
await sandbox.init();
async function full(i: number): Promise<number> {
  const started = performance.now();
  const kernel = await startPythonKernel(sandbox, `bench-${i}`, join(root, `ws-${i}`));
  const ms = performance.now() - started;
  await kernel.kill();
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const bares: number[] = [];
const bareDrivers: number[] = [];
const fulls: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  bares.push(await bare());
  bareDrivers.push(await bareDriver());
  fulls.push(await full(i));
}
await sandbox.close();
const [b, d, f] = [median(bares), median(bareDrivers), median(fulls)];
console.log(`rounds: ${ROUNDS}, interleaved`);
console.log(`bare bwrap python3 (first byte):            median ${b.toFixed(1)} ms`);
console.log(`bare bwrap + runcell driver (ready frame):  median ${d.toFixed(1)} ms`);
console.log(`runcell kernel, every control (ready):      median ${f.toFixed(1)} ms`);
console.log(`controls cost: full / (bare + driver) = ${(f / d).toFixed(2)}`);
console.log(`full / bare python3 = ${(f / b).toFixed(2)}`);
