import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  return loadConfig({}, [], { dataDir: tempDir(), logLevel: 'silent', ...overrides });
}

/** Collects a sandboxed process's stdout and stderr until it exits. */
export async function collect(proc: SandboxProcess) {
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = await proc.exited;
  return { ...exit, stdout, stderr };
}
