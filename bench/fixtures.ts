/** What the benchmarks share: a silent logger, a data directory, and a sandboxed Python kernel. */
import { appendFileSync, chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import WebSocket from 'ws';
import { Kernel } from '../src/kernels/kernel.ts';
import { PythonDriver } from '../src/kernels/python/python-driver.ts';
import type { Sandbox } from '../src/sandbox/sandbox.ts';

export const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

/** A fresh directory the sandbox uids can search (bwrap resolves bind sources as them). */
export function benchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'runcell-bench-'));
  chmodSync(dir, 0o711);
  return dir;
}

/** The server's default kernel limits. */
export const KERNEL_LIMITS = {
  memoryBytes: 512 << 20,
  maxProcesses: 64,
  tmpBytes: 64 << 20,
  cpus: 1,
  openFiles: 1024,
  fileBytes: 1 << 30,
};

export const python = new PythonDriver('/usr/bin/python3');

/** The server's default workspace quota: each notebook's workspace is a volume of its own. */
export const WORKSPACE_QUOTA = { bytes: 1 << 30, inodes: 65536 };

/** A Python kernel with every control on, as the server starts one. */
export function startPythonKernel(sandbox: Sandbox, notebookId: string, workspace: string): Promise<Kernel> {
  return Kernel.start(sandbox, python, {
    notebookId,
    workspace,
    workspaceQuota: WORKSPACE_QUOTA,
    limits: KERNEL_LIMITS,
    network: false,
    log,
  });
}

/** Listens on a free loopback port; the base URL. */
export async function listenOnLoopback(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

/** A cell straight through a kernel's pipe (the floor): its milliseconds. */
export async function timedPipeCell(kernel: Kernel, code: string): Promise<number> {
  const t = performance.now();
  await kernel.execute(code, {
    timeoutMs: 30_000,
    cpuTimeMs: 0,
    cpuCores: 1,
    graceMs: 1000,
    maxOutputBytes: 1 << 20,
  });
  return performance.now() - t;
}

/**
 * A notebook's WebSocket: `run` times execute → submission.finished, `firstOutput` execute → the
 * cell's first cell.stream (resolving once the cell is done).
 */
export async function notebookWebSocket(base: string, notebookId: string) {
  const socket = new WebSocket(`${base.replace('http', 'ws')}/api/v1/notebooks/${notebookId}/ws`);
  await new Promise((resolve) => socket.once('open', resolve));
  let onFinished: (() => void) | undefined;
  let onStream: (() => void) | undefined;
  socket.on('message', (data) => {
    const { type } = JSON.parse(data.toString()) as { type: string };
    if (type === 'cell.stream') onStream?.();
    if (type === 'submission.finished') onFinished?.();
  });
  const execute = (code: string) =>
    socket.send(JSON.stringify({ type: 'execute', cells: [{ cellId: 'c', code }] }));
  return {
    run(code: string): Promise<number> {
      const t = performance.now();
      return new Promise((resolve) => {
        onFinished = () => resolve(performance.now() - t);
        execute(code);
      });
    },
    firstOutput(code: string): Promise<number> {
      const t = performance.now();
      let first: number | undefined;
      return new Promise((resolve, reject) => {
        onStream = () => (first ??= performance.now() - t);
        onFinished = () => {
          onStream = undefined;
          if (first === undefined) reject(new Error(`no cell.stream for ${JSON.stringify(code)}`));
          else resolve(first);
        };
        execute(code);
      });
    },
    close: () => socket.close(),
  };
}

/** One cell through runcell's Pennant path (POST submit + long-poll status): its milliseconds. */
export async function timedCell(base: string, notebookId: string, code: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`${base}/api/submit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ notebookId, cells: [{ cellId: 'c', code }] }),
  });
  const { submissionId } = (await res.json()) as { submissionId: string };
  const status = (await (await fetch(`${base}/api/status/${submissionId}?wait=30`)).json()) as {
    status: string;
  };
  if (status.status !== 'success') throw new Error(`${notebookId}: cell failed: ${JSON.stringify(status)}`);
  return performance.now() - t;
}

/** One row of the table `npm run bench` writes into BENCHMARKS.md. */
export interface ResultRow {
  /** What was measured, with the command that measured it. */
  benchmark: string;
  runcell: string;
  /** The physical floor measured in the same run, if any. */
  floor?: string;
  /** Jupyter Server with ipykernel, measured in the same run, if any. */
  peer?: string;
  /** runcell against the floor or the peer, as the benchmark defines it. */
  ratio?: string;
  /** The target, and whether this run met it. */
  target?: string;
}

/**
 * Hands rows to `bench/run-all.ts` (which sets RUNCELL_BENCH_RESULTS to a file it reads after
 * the benchmark exits); run alone, a benchmark prints them.
 */
export function report(...rows: ResultRow[]): void {
  const file = process.env.RUNCELL_BENCH_RESULTS;
  if (file) appendFileSync(file, rows.map((row) => JSON.stringify(row) + '\n').join(''));
  else for (const row of rows) console.log('result:', JSON.stringify(row));
}

/** Median and p99 of milliseconds, for a row. */
export function medianP99(xs: number[], digits = 2): string {
  return `median ${quantile(xs, 0.5).toFixed(digits)} ms, p99 ${quantile(xs, 0.99).toFixed(digits)} ms`;
}

export const quantile = (xs: number[], q: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;

/** "met" or "not met", for a target. */
export const met = (ok: boolean): string => (ok ? 'met' : 'not met');
