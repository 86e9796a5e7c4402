/**
 * runcell against its peer, Jupyter Server with ipykernel (Debian's packages), in one invocation,
 * interleaved; the machine is noisy, so read the ratios.
 *
 * 1. Warm cell: sequential cells alternating `x += 1` and `print(1)` into one notebook, submit →
 *    final result, through runcell's fastest public paths (POST /api/submit + long-poll status, and
 *    the notebook WebSocket), through Jupyter's channels WebSocket (execute_request → iopub
 *    `status: idle`) stock and with TCP_NODELAY on both ends, and the floor: a bare sandboxed
 *    Python kernel driven over its pipe.
 * 2. Cold notebook: a new notebook's first cell `print(1)` → result: runcell with its default warm
 *    pool (waited for before each round, as for notebooks that do not arrive all at once) against
 *    Jupyter's POST /api/kernels + channels connect + first cell, stock and with TCP_NODELAY.
 * 3. Streaming: the first output of `print(1); time.sleep(0.5)` at the client, submit → first
 *    `cell.stream` on runcell's notebook WebSocket against execute_request → first iopub `stream`
 *    on Jupyter's channels WebSocket, stock and with TCP_NODELAY; interleaved rounds.
 *
 *   node --import tsx bench/jupyter-peer.ts [cells=1000] [notebooks=50] [stream rounds=10]
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
import { JupyterServer } from './jupyter-server.ts';

const CELLS = Number(process.argv[2] ?? 1000);
const NOTEBOOKS = Number(process.argv[3] ?? 50);
const STREAM_ROUNDS = Number(process.argv[4] ?? 10);
const STREAM_CELL = 'print(1); time.sleep(0.5)';
const dataDir = benchDir();
const app = await buildApp(loadConfig({}, [], { dataDir, logLevel: 'silent', sandboxUidBase: 65200 }));
const base = await listenOnLoopback(app);
const sandbox = new BwrapSandbox({ uidBase: 65290, uidCount: 2, instance: 'bench-peer', log });
await sandbox.init();
const [stock, nodelay] = await Promise.all([
  JupyterServer.start({ nodelay: false }),
  JupyterServer.start({ nodelay: true }),
]);

const viaHttp = (notebookId: string, code: string) => timedCell(base, notebookId, code);

const runcellWs = await notebookWebSocket(base, 'bench-ws');
const viaWebSocket = runcellWs.run;
const firstOutputViaWebSocket = runcellWs.firstOutput;

const kernel = await startPythonKernel(sandbox, 'floor', join(dataDir, 'floor'));
const viaPipe = (code: string) => timedPipeCell(kernel, code);

async function jupyterWarm(server: JupyterServer, tcpNoDelay: boolean) {
  const id = await server.startKernel();
  const channels = await server.connect(id, tcpNoDelay);
  return {
    async run(code: string): Promise<number> {
      const t = performance.now();
      await channels.execute(code);
      return performance.now() - t;
    },
    /** execute_request → the cell's first iopub `stream`; resolves once the kernel is idle. */
    async firstOutput(code: string): Promise<number> {
      const t = performance.now();
      let first: number | undefined;
      await channels.execute(code, () => (first ??= performance.now() - t));
      if (first === undefined) throw new Error(`no iopub stream for ${JSON.stringify(code)}`);
      return first;
    },
    async close() {
      await channels.close();
      await server.deleteKernel(id);
    },
  };
}

/** Jupyter's new notebook: start a kernel, connect its channels, run the first cell. */
async function jupyterCold(server: JupyterServer, tcpNoDelay: boolean): Promise<number> {
  const t = performance.now();
  const id = await server.startKernel();
  const channels = await server.connect(id, tcpNoDelay);
  await channels.execute('print(1)');
  const elapsed = performance.now() - t;
  await channels.close();
  await server.deleteKernel(id);
  return elapsed;
}

async function poolReady(): Promise<void> {
  while ((await app.inject('/healthz')).json().pooledKernels < 1) await new Promise((r) => setTimeout(r, 5));
}

const median = (xs: number[]) => quantile(xs, 0.5);
const p99 = (xs: number[]) => quantile(xs, 0.99);

const warm: Record<string, number[]> = {
  'runcell long-poll': [],
  'runcell websocket': [],
  'jupyter stock': [],
  'jupyter TCP_NODELAY': [],
  'floor (pipe)': [],
};
const cold: Record<string, number[]> = {
  'runcell, kernel from the pool': [],
  'jupyter stock, kernel start + cell': [],
  'jupyter TCP_NODELAY, kernel start + cell': [],
};
const stream: Record<string, number[]> = {
  'runcell websocket': [],
  'jupyter stock': [],
  'jupyter TCP_NODELAY': [],
};
try {
  const [jStock, jNoDelay] = await Promise.all([jupyterWarm(stock, false), jupyterWarm(nodelay, true)]);
  const paths = [
    (code: string) => viaHttp('bench-http', code),
    viaWebSocket,
    jStock.run,
    jNoDelay.run,
    viaPipe,
  ];
  const series = Object.values(warm);
  for (const run of paths) await run('x = 0'); // start the kernels
  for (let i = 0; i < CELLS; i++) {
    const code = i % 2 === 0 ? 'x += 1' : 'print(1)';
    for (const [k, run] of paths.entries()) series[k]!.push(await run(code));
  }

  const streamPaths = [firstOutputViaWebSocket, jStock.firstOutput, jNoDelay.firstOutput];
  const streamSeries = Object.values(stream);
  for (const run of [viaWebSocket, jStock.run, jNoDelay.run]) await run('import time');
  for (let i = 0; i < STREAM_ROUNDS; i++)
    for (const [k, run] of streamPaths.entries()) streamSeries[k]!.push(await run(STREAM_CELL));
  await Promise.all([jStock.close(), jNoDelay.close()]);

  const [fromPool, jStockCold, jNoDelayCold] = Object.values(cold);
  for (let i = 0; i < NOTEBOOKS; i++) {
    await poolReady();
    fromPool!.push(await viaHttp(`new-${i}`, 'print(1)'));
    await app.inject({ method: 'POST', url: `/api/reset/new-${i}` }); // keep the kernel count flat
    jStockCold!.push(await jupyterCold(stock, false));
    jNoDelayCold!.push(await jupyterCold(nodelay, true));
  }
} finally {
  runcellWs.close();
  await kernel.kill();
  await sandbox.close();
  await app.close();
  await Promise.all([stock.stop(), nodelay.stop()]);
}

const ms = (x: number) => x.toFixed(2).padStart(9);
const ratio = (x: number) => `${x.toFixed(1)}×`.padStart(8);
const lp = warm['runcell long-poll']!;
const ws = warm['runcell websocket']!;
console.log(`warm cell: ${CELLS} cells per path (x += 1 / print(1) alternating), interleaved`);
console.log(`${'path'.padEnd(22)}median ms   p99 ms  med/lp  med/ws  p99/lp  p99/ws`);
for (const [path, xs] of Object.entries(warm))
  console.log(
    `${path.padEnd(22)}${ms(median(xs))}${ms(p99(xs))}${ratio(median(xs) / median(lp))}${ratio(median(xs) / median(ws))}${ratio(p99(xs) / p99(lp))}${ratio(p99(xs) / p99(ws))}`,
  );
const pool = cold['runcell, kernel from the pool']!;
console.log(`cold notebook: ${NOTEBOOKS} new notebooks, first cell print(1) → result, interleaved`);
console.log(`${'path'.padEnd(42)}median ms   p99 ms  med/runcell`);
for (const [path, xs] of Object.entries(cold))
  console.log(`${path.padEnd(42)}${ms(median(xs))}${ms(p99(xs))}${ratio(median(xs) / median(pool))}`);
const streamLine = (path: string, xs: number[]) =>
  console.log(`${path.padEnd(22)}${ms(median(xs))}${ms(p99(xs))}`);
console.log(`streaming: ${STREAM_ROUNDS} rounds, first output of ${STREAM_CELL} at the client, interleaved`);
console.log(`${'path'.padEnd(22)}median ms   p99 ms`);
for (const [path, xs] of Object.entries(stream)) streamLine(path, xs);

const command = ['bench/jupyter-peer.ts', ...process.argv.slice(2)].join(' ');
const jStockWarm = warm['jupyter stock']!;
const jNoDelayWarm = warm['jupyter TCP_NODELAY']!;
const pipe = warm['floor (pipe)']!;
const slower = (peer: number[], runcell: number[]) => (median(peer) / median(runcell)).toFixed(1);
const peers = (s: number[], n: number[]) => `Jupyter stock ${medianP99(s)}; TCP_NODELAY ${medianP99(n)}`;
const warmRow = (how: string, xs: number[]) => ({
  benchmark: `warm cell \`x += 1\`/\`print(1)\` against Jupyter Server + ipykernel (channels WebSocket, execute_request → iopub idle), ${CELLS} cells, runcell ${how} (\`${command}\`)`,
  runcell: medianP99(xs, 3),
  floor: `kernel over its pipe: ${medianP99(pipe, 3)}`,
  peer: peers(jStockWarm, jNoDelayWarm),
  ratio:
    `Jupyter TCP_NODELAY ${slower(jNoDelayWarm, xs)}× slower, stock ${slower(jStockWarm, xs)}× slower; ` +
    `runcell ${(median(xs) / median(pipe)).toFixed(1)}× the pipe (median)`,
  target:
    `median ≤ 1.0 ms, p99 ≤ 3 ms: ${met(median(xs) <= 1 && p99(xs) <= 3)}; ` +
    `≥ 5× faster than ipykernel (TCP_NODELAY, median): ${met(median(jNoDelayWarm) >= 5 * median(xs))}`,
});
const streamRuncell = stream['runcell websocket']!;
report(
  warmRow('POST submit + long-poll status', lp),
  warmRow('notebook WebSocket', ws),
  {
    benchmark: `cold notebook against Jupyter: a new notebook's first \`print(1)\` → result, runcell from its warm pool (POST submit + long-poll) vs Jupyter POST /api/kernels + channels connect + cell, ${NOTEBOOKS} notebooks (\`${command}\`)`,
    runcell: medianP99(pool),
    peer: peers(
      cold['jupyter stock, kernel start + cell']!,
      cold['jupyter TCP_NODELAY, kernel start + cell']!,
    ),
    ratio:
      `Jupyter TCP_NODELAY ${slower(cold['jupyter TCP_NODELAY, kernel start + cell']!, pool)}× slower, ` +
      `stock ${slower(cold['jupyter stock, kernel start + cell']!, pool)}× slower (median)`,
    target: `median ≤ 5 ms from the warm pool: ${met(median(pool) <= 5)}`,
  },
  {
    benchmark: `streaming: first output of \`${STREAM_CELL}\` at the client, runcell notebook WebSocket submit → first cell.stream vs Jupyter execute_request → first iopub stream, ${STREAM_ROUNDS} rounds (\`${command}\`)`,
    runcell: medianP99(streamRuncell),
    peer: peers(stream['jupyter stock']!, stream['jupyter TCP_NODELAY']!),
    ratio:
      `Jupyter TCP_NODELAY ${slower(stream['jupyter TCP_NODELAY']!, streamRuncell)}× slower, ` +
      `stock ${slower(stream['jupyter stock']!, streamRuncell)}× slower (median)`,
    target: `median ≤ 10 ms: ${met(median(streamRuncell) <= 10)}`,
  },
);
