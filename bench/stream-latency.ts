/**
 * Streaming: how long a cell's print takes to reach an SSE client, and how much a flooding cell
 * pushes through the stream. The floor is a bare python3 writing to a pipe the same moment it
 * prints, read by this process. Interleaved in one run.
 *
 *   node --import tsx bench/stream-latency.ts [rounds]
 */
import { spawn } from 'node:child_process';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { benchDir, listenOnLoopback } from './fixtures.ts';

const ROUNDS = Number(process.argv[2] ?? 30);
const dataDir = benchDir();
const app = await buildApp(
  loadConfig({}, [], { dataDir, logLevel: 'silent', maxOutputBytes: 256 << 20, sandboxUidBase: 64200 }),
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
      {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: {},
      },
    );
    child.stdout.once('data', (d: Buffer) => resolve(Number(nowNs() - BigInt(d.toString().trim())) / 1e6));
  });
}

const FLOOD_LINES = 200_000;
async function flood(): Promise<{ seconds: number; bytes: number; lines: number }> {
  const id = await submit(`import sys\nfor i in range(${FLOOD_LINES}): print('x' * 63)`);
  let bytes = 0;
  let lines = 0;
  let first = 0;
  let last = 0;
  await stream(id, (text) => {
    if (!first) first = performance.now();
    last = performance.now();
    bytes += Buffer.byteLength(text);
    for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lines++;
  });
  return { seconds: (last - first) / 1000, bytes, lines };
}

const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;
await runcellLatency(); // warm the kernel
const runcell: number[] = [];
const floor: number[] = [];
for (let i = 0; i < ROUNDS; i++) {
  runcell.push(await runcellLatency());
  floor.push(await floorLatency());
}
const f = await flood();
await app.close();
console.log(`rounds: ${ROUNDS}, interleaved`);
console.log(
  `print → SSE client (runcell): median ${quantile(runcell, 0.5).toFixed(2)} ms, p99 ${quantile(runcell, 0.99).toFixed(2)} ms`,
);
console.log(
  `print → pipe reader (floor):  median ${quantile(floor, 0.5).toFixed(2)} ms, p99 ${quantile(floor, 0.99).toFixed(2)} ms`,
);
console.log(`ratio (median): ${(quantile(runcell, 0.5) / quantile(floor, 0.5)).toFixed(1)}`);
console.log(
  `flood: ${f.lines} lines, ${(f.bytes / 1048576).toFixed(1)} MiB in ${f.seconds.toFixed(2)} s: ` +
    `${Math.round(f.lines / f.seconds)} lines/s, ${(f.bytes / 1048576 / f.seconds).toFixed(1)} MiB/s`,
);
