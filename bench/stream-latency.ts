/**
 * Streaming: how long a cell's print takes to reach an SSE client, and how much a flooding cell
 * pushes through the stream to a client in another process. The floors are a bare python3
 * writing to a pipe read by this process: the moment it prints, and 10^6 lines through it.
 * Interleaved in one run.
 *
 *   node --import tsx bench/stream-latency.ts [rounds] [flood lines] [flood rounds]
 */
import { spawn } from 'node:child_process';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { benchDir, listenOnLoopback, medianP99, met, quantile, report } from './fixtures.ts';

const ROUNDS = Number(process.argv[2] ?? 30);
const FLOOD_LINES = Number(process.argv[3] ?? 1_000_000);
const FLOOD_ROUNDS = Number(process.argv[4] ?? 2);
const LINE_BYTES = 100; // 99 characters and the newline: 10^6 lines are 100 MB
const FLOOD_CODE = `for i in range(${FLOOD_LINES}): print('x' * ${LINE_BYTES - 1})`;

const dataDir = benchDir();
// The output limit is per cell: a 100 MB flood needs one above it (the default is 1 MiB).
const maxOutputBytes = Math.max(1 << 20, FLOOD_LINES * LINE_BYTES + (16 << 20));
const app = await buildApp(
  loadConfig({}, [], { dataDir, logLevel: 'silent', maxOutputBytes, sandboxUidBase: 64200 }),
);
const base = await listenOnLoopback(app);
const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));

async function submit(code: string): Promise<string> {
  const res = await fetch(`${base}/api/submit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ notebookId: 'bench', cells: [{ cellId: 'c', code }], timeout: 120 }),
  });
  return ((await res.json()) as { submissionId: string }).submissionId;
}

/** Reads the SSE stream, handing each cell.stream text to onText, until the end. */
async function stream(id: string, onText: (text: string) => void): Promise<void> {
  const res = await fetch(`${base}/api/v1/submissions/${id}/events`);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (block.includes('event: cell.stream')) {
        onText((JSON.parse(block.slice(block.indexOf('data: ') + 6)) as { text: string }).text);
      }
      if (block.includes('event: submission.finished')) return;
    }
  }
}

const PRINT_STAMP = 'import time\nprint(time.time_ns(), flush=True)\ntime.sleep(0.3)';

async function runcellLatency(): Promise<number> {
  const id = await submit(PRINT_STAMP);
  let ms = NaN;
  await stream(id, (text) => {
    if (Number.isNaN(ms)) ms = Number(nowNs() - BigInt(text.trim())) / 1e6;
  });
  return ms;
}

function floorLatency(): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(
      '/usr/bin/python3',
      [
        '-I',
        '-c',
        'import time, sys; sys.stdout.write(str(time.time_ns())); sys.stdout.flush(); time.sleep(0.1)',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], env: {} },
    );
    child.stdout.once('data', (d: Buffer) => resolve(Number(nowNs() - BigInt(d.toString().trim())) / 1e6));
  });
}

interface Flood {
  seconds: number; // cell.started → last line at the client
  lines: number;
  /** Growth of the server's resident memory over the flood, MiB. */
  rssMiB: number;
  /** cell.started → the submission's end (its 100 MB result stored and sent) at the client. */
  finishedSeconds: number;
}

/** The flood through runcell, read by bench/sse-reader.ts in a process of its own. */
async function runcellFlood(): Promise<Flood> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bench/sse-reader.ts', base, 'bench', FLOOD_CODE],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  await new Promise((resolve) => child.on('exit', resolve));
  clearInterval(sampler);
  const f = JSON.parse(out) as { lastStreamMs: number; finishedMs: number; lines: number };
  return {
    seconds: f.lastStreamMs / 1000,
    lines: f.lines,
    rssMiB: (peak - before) / 1048576,
    finishedSeconds: f.finishedMs / 1000,
  };
}

/** The same lines from a bare python3 through a pipe into this process, first byte → end. */
function floorFlood(): Promise<Flood> {
  return new Promise((resolve) => {
    let t = 0; // its first byte: interpreter start-up is not part of the flood
    const child = spawn('/usr/bin/python3', ['-I', '-c', FLOOD_CODE], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {},
    });
    let lines = 0;
    child.stdout.on('data', (d: Buffer) => {
      t ||= performance.now();
      for (let i = d.indexOf(10); i >= 0; i = d.indexOf(10, i + 1)) lines++;
    });
    child.stdout.on('end', () => {
      const seconds = (performance.now() - t) / 1000;
      resolve({ seconds, lines, rssMiB: 0, finishedSeconds: seconds });
    });
  });
}

await runcellLatency(); // warm the kernel
const runcell: number[] = [];
const floor: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  runcell.push(await runcellLatency());
  floor.push(await floorLatency());
}
const floods: Flood[] = [];
const floorFloods: Flood[] = [];
for (let i = 0; i < FLOOD_ROUNDS; i++) {
  floods.push(await runcellFlood());
  floorFloods.push(await floorFlood());
}
await app.close();

const lineRate = (f: Flood) => f.lines / f.seconds;
const best = (fs: Flood[]) => fs.reduce((a, b) => (lineRate(b) > lineRate(a) ? b : a));
const flood = best(floods);
const floorBest = best(floorFloods);
const mbps = (f: Flood) => (f.lines * LINE_BYTES) / 1e6 / f.seconds;
const complete = floods.every((f) => f.lines === FLOOD_LINES);

console.log(`rounds: ${ROUNDS}, interleaved`);
console.log(`print → SSE client (runcell): ${medianP99(runcell)}`);
console.log(`print → pipe reader (floor):  ${medianP99(floor)}`);
for (const [name, f] of [
  ['runcell', flood],
  ['floor', floorBest],
] as const) {
  console.log(
    `flood ${name.padEnd(8)} ${f.lines} lines in ${f.seconds.toFixed(2)} s: ${Math.round(lineRate(f))} lines/s, ` +
      `${mbps(f).toFixed(0)} MB/s` +
      (name === 'runcell'
        ? `; ended after ${f.finishedSeconds.toFixed(2)} s; server RSS +${f.rssMiB.toFixed(0)} MiB`
        : ''),
  );
}
const latency = quantile(runcell, 0.5);
report(
  {
    benchmark: `first output of a cell → SSE client (\`bench/stream-latency.ts ${ROUNDS}\`)`,
    runcell: medianP99(runcell),
    floor: `bare python3 → pipe: ${medianP99(floor)}`,
    ratio: `${(latency / quantile(floor, 0.5)).toFixed(1)}× the pipe`,
    target: `≤ 10 ms: ${met(latency <= 10)}`,
  },
  {
    benchmark:
      `flood of ${FLOOD_LINES} lines × ${LINE_BYTES} B, cell.started → last line at an SSE client in another process ` +
      `(best of ${FLOOD_ROUNDS})`,
    runcell:
      `${Math.round(lineRate(flood)).toLocaleString('en')} lines/s, ${mbps(flood).toFixed(0)} MB/s` +
      `${complete ? '' : ' (LINES MISSING)'}; result stored and sent after ${flood.finishedSeconds.toFixed(1)} s; ` +
      `server RSS +${flood.rssMiB.toFixed(0)} MiB`,
    floor: `bare python3 → pipe: ${Math.round(lineRate(floorBest)).toLocaleString('en')} lines/s, ${mbps(floorBest).toFixed(0)} MB/s`,
    ratio: `${(lineRate(flood) / lineRate(floorBest)).toFixed(2)}× the pipe`,
    target: `≥ 1 M lines/s and ≥ 200 MB/s: ${met(complete && lineRate(flood) >= 1e6 && mbps(flood) >= 200)}`,
  },
);
