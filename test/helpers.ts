import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { loadConfig, type Config } from '../src/config.ts';
import type { SandboxProcess } from '../src/sandbox/sandbox.ts';

export const silentLog = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;

/** A fresh temp directory, searchable by the sandbox uids (as bwrap needs for a bind source). */
export function tempDir(prefix = 'runcell-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o711);
  return dir;
}

export function testConfig(overrides: Partial<Config> = {}): Config {
  // No warm pool unless a test asks: its kernels would hold uids and CPU the test does not expect.
  return loadConfig({}, [], { dataDir: tempDir(), logLevel: 'silent', kernelPool: [], ...overrides });
}

/** Collects a sandboxed process's stdout and stderr until it exits. */
export async function collect(proc: SandboxProcess) {
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // 'exit' can come before the last output is read: wait for both streams to end too.
  const [exit] = await Promise.all([proc.exited, finished(proc.stdout), finished(proc.stderr)]);
  return { ...exit, stdout, stderr };
}

import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.ts';

/** A real runcell (real sandboxes and kernels) on a fresh data directory. */
export async function startApp(overrides: Partial<Config> = {}): Promise<FastifyInstance> {
  return buildApp(testConfig(overrides));
}

export interface StatusBody {
  submissionId: string;
  status: 'pending' | 'success' | 'error';
  state: string;
  requestOrder: string[];
  cellsExecuted: string[];
  reason: string | null;
  results: {
    cellId: string;
    type: 'output' | 'error' | 'critical';
    output: string;
    timedOut: boolean;
    contextLost: boolean;
    droppedBytes: number;
    outputs: Record<string, unknown>[];
  }[];
}

/** POST /api/submit, expecting 202; returns the submission id. */
export async function submit(app: FastifyInstance, body: unknown, prefix = ''): Promise<string> {
  const res = await app.inject({ method: 'POST', url: `${prefix}/api/submit`, payload: body as object });
  if (res.statusCode !== 202) throw new Error(`submit answered ${res.statusCode}: ${res.body}`);
  return res.json().submissionId;
}

/** The submission's status once final (long-poll). */
export async function finalStatus(app: FastifyInstance, id: string, prefix = ''): Promise<StatusBody> {
  for (;;) {
    const res = await app.inject({ method: 'GET', url: `${prefix}/api/status/${id}?wait=30` });
    if (res.statusCode !== 200) throw new Error(`status answered ${res.statusCode}: ${res.body}`);
    const body = res.json() as StatusBody;
    if (body.status !== 'pending') return body;
  }
}

let counter = 0;
/** A notebook id no other test uses. */
export const notebookId = (label = 'nb') => `${label}-${process.pid}-${++counter}`;

/** Runs cells in a notebook and returns the final status. */
export async function run(
  app: FastifyInstance,
  notebook: string,
  cells: (string | { cellId?: string; code: string; language?: string })[],
  extra: Record<string, unknown> = {},
  prefix = '',
): Promise<StatusBody> {
  const body = {
    notebookId: notebook,
    cells: cells.map((c, i) =>
      typeof c === 'string' ? { cellId: `c${i}`, code: c } : { cellId: `c${i}`, ...c },
    ),
    ...extra,
  };
  return finalStatus(app, await submit(app, body, prefix), prefix);
}
