/**
 * Warm cell latency: sequential `x += 1` cells into one notebook, submit → final result, through
 * runcell's public paths (POST /api/submit + long-poll GET /api/status?wait, and the notebook
 * WebSocket), against the floor: the same sandboxed kernel driven directly over its pipe by the
 * Kernel class (no HTTP, no store). Interleaved in one run.
 *
 *   node --import tsx bench/warm-cell.ts [cells]
 */
import { join } from 'node:path';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { BwrapSandbox } from '../src/sandbox/bwrap-sandbox.ts';
import {
  benchDir,
  listenOnLoopback,
  log,
  medianP99,
  met,
  quantile,
  report,
  notebookWebSocket,
  startPythonKernel,
  timedPipeCell,
  timedCell,
} from './fixtures.ts';

const CELLS = Number(process.argv[2] ?? 500);
const dataDir = benchDir();
const app = await buildApp(loadConfig({}, [], { dataDir, logLevel: 'silent', sandboxUidBase: 64300 }));
const base = await listenOnLoopback(app);
// The same server with RUNCELL_DB_SYNC=normal: what the two fsyncs per cell cost.
const appNoFsync = await buildApp(
  loadConfig({}, [], { dataDir: benchDir(), logLevel: 'silent', sandboxUidBase: 65600, dbSync: 'normal' }),
);
const baseNoFsync = await listenOnLoopback(appNoFsync);

const viaHttp = (code: string) => timedCell(base, 'bench-http', code);

const ws = await notebookWebSocket(base, 'bench-ws');
const wsNoFsync = await notebookWebSocket(baseNoFsync, 'bench-ws');
const viaWebSocket = ws.run;
const viaWebSocketNoFsync = wsNoFsync.run;

const sandbox = new BwrapSandbox({ uidBase: 64400, uidCount: 2, instance: 'bench-warm', log });
await sandbox.init();
const kernel = await startPythonKernel(sandbox, 'floor', join(dataDir, 'floor'));
const viaPipe = (code: string) => timedPipeCell(kernel, code);

for (const run of [viaHttp, viaWebSocket, viaWebSocketNoFsync, viaPipe]) await run('x = 0'); // start the kernels
const results: Record<string, number[]> = { http: [], websocket: [], 'ws-nofsync': [], pipe: [] };
for (let i = 0; i < CELLS; i++) {
  const code = i % 2 === 0 ? 'x += 1' : 'print(1)';
  results.http!.push(await viaHttp(code));
  results.websocket!.push(await viaWebSocket(code));
  results['ws-nofsync']!.push(await viaWebSocketNoFsync(code));
  results.pipe!.push(await viaPipe(code));
}
ws.close();
wsNoFsync.close();
await kernel.kill();
await sandbox.close();
await app.close();
await appNoFsync.close();
const floor = quantile(results.pipe!, 0.5);
console.log(`cells: ${CELLS} per path (x += 1 and print(1) alternating), interleaved`);
for (const [path, xs] of Object.entries(results)) {
  const median = quantile(xs, 0.5);
  console.log(
    `${path.padEnd(10)} median ${median.toFixed(3)} ms, p99 ${quantile(xs, 0.99).toFixed(3)} ms, ${(median / floor).toFixed(1)}× the pipe`,
  );
}
const command = ['bench/warm-cell.ts', ...process.argv.slice(2)].join(' ');
const paths = {
  http: 'POST submit + long-poll status',
  websocket: 'notebook WebSocket',
  'ws-nofsync': 'notebook WebSocket, RUNCELL_DB_SYNC=normal (no fsync per commit)',
} as const;
report(
  ...(['http', 'websocket', 'ws-nofsync'] as const).map((path) => {
    const xs = results[path]!;
    return {
      benchmark: `warm cell \`x += 1\`/\`print(1)\`, ${CELLS} cells, ${paths[path]} (\`${command}\`)`,
      runcell: medianP99(xs, 3),
      floor: `kernel over its pipe: ${medianP99(results.pipe!, 3)}`,
      ratio: `${(quantile(xs, 0.5) / floor).toFixed(1)}× the pipe (median)`,
      target: `median ≤ 1.0 ms, p99 ≤ 3 ms: ${met(quantile(xs, 0.5) <= 1 && quantile(xs, 0.99) <= 3)}`,
    };
  }),
);
