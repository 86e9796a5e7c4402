import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { configDocs } from '../src/config-docs.ts';
import { ERRORS, errorCode, type ErrorName } from '../src/errors.ts';

describe('config', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({}, []);
    expect(config).toMatchObject({ host: '127.0.0.1', port: 3000, dataDir: './.runcell', sandbox: 'bwrap' });
    expect(config.corsOrigins).toEqual([]);
  });

  it('reads HOST, PORT, RUNCELL_* variables and flags, flags winning', () => {
    const config = loadConfig(
      {
        HOST: '127.0.0.2',
        PORT: '8080',
        RUNCELL_MAX_OUTPUT_BYTES: '2048',
        RUNCELL_CORS_ORIGINS: 'http://a, http://b',
      },
      ['--port=9090', '--sandbox-network'],
    );
    expect(config.host).toBe('127.0.0.2');
    expect(config.port).toBe(9090);
    expect(config.maxOutputBytes).toBe(2048);
    expect(config.corsOrigins).toEqual(['http://a', 'http://b']);
    expect(config.sandboxNetwork).toBe(true);
  });

  it.each([
    [{ PORT: 'eighty' }, [], /port \(PORT\)/],
    [{ RUNCELL_KERNEL_MEMORY_MB: '1' }, [], /kernelMemoryMb \(RUNCELL_KERNEL_MEMORY_MB\)/],
    [{ RUNCELL_SANDBOX: 'docker' }, [], /sandbox \(RUNCELL_SANDBOX\)/],
    [{}, ['--no-such-option=1'], /unknown option --no-such-option/],
    [{ RUNCELL_CELL_TIMEOUT_SECONDS: '600' }, [], /above maxCellTimeoutSeconds/],
  ])('rejects %j %j naming the option', (env, argv, message) => {
    expect(() => loadConfig(env, argv)).toThrow(message);
  });

  it('docs/config.md is generated from the schema', () => {
    expect(readFileSync(new URL('../docs/config.md', import.meta.url), 'utf8')).toBe(configDocs());
  });
});

describe('errors', () => {
  it('documents every error code in docs/errors.md', () => {
    const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
    for (const name of Object.keys(ERRORS) as ErrorName[]) {
      expect(doc).toContain(`### ${errorCode(name)}\n`);
    }
  });
});
