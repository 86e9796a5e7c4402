/** The entry point as a user runs it: `npm start` with environment variables. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers.ts';

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { PATH: process.env.PATH!, RUNCELL_DATA_DIR: tempDir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { child, exited, output: () => output };
}

describe('server entry', () => {
  it('listens on HOST:PORT, answers /healthz, and closes cleanly on SIGTERM', async () => {
    const port = 20000 + (process.pid % 20000);
    const server = start({ PORT: String(port), RUNCELL_LOG_LEVEL: 'info' });
    let health: Response | undefined;
    for (let i = 0; i < 100 && !health; i++) {
      await new Promise((r) => setTimeout(r, 100));
      health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined);
    }
    expect(health?.status).toBe(200);
    expect(await health!.json()).toMatchObject({ status: 'ok' });
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  it('refuses a bad option, naming it', async () => {
    const server = start({ RUNCELL_KERNEL_MEMORY_MB: 'lots' });
    expect(await server.exited).toBe(1);
    expect(server.output()).toMatch(
      /RUNCELL_ERR_CONFIG_INVALID: .*kernelMemoryMb \(RUNCELL_KERNEL_MEMORY_MB\)/,
    );
  });

  it('refuses to listen beyond loopback without a token', async () => {
    const server = start({ HOST: '0.0.0.0' });
    expect(await server.exited).toBe(1);
    expect(server.output()).toMatch(/refusing to listen on 0\.0\.0\.0 without RUNCELL_AUTH_TOKEN/);
  });

  it('refuses to listen beyond loopback with the unsafe sandbox', async () => {
    const server = start({ HOST: '0.0.0.0', RUNCELL_AUTH_TOKEN: 't', RUNCELL_SANDBOX: 'none' });
    expect(await server.exited).toBe(1);
    expect(server.output()).toMatch(/unsafe "none" sandbox/);
  });
});
