/** RUNCELL_DB_SYNC: how SQLite makes a commit durable. */
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { tempDir } from '../helpers.ts';

async function synchronous(store: SqliteStore): Promise<number> {
  const { rows } = await sql<{ synchronous: number }>`PRAGMA synchronous`.execute(
    (store as unknown as { db: Kysely<unknown> }).db,
  );
  return rows[0]!.synchronous;
}

describe('SqliteStore durability setting', () => {
  it('fsyncs every commit by default (FULL), and only checkpoints with normal', async () => {
    const full = new SqliteStore(join(tempDir(), 'a.db'));
    const normal = new SqliteStore(join(tempDir(), 'b.db'), 'normal');
    try {
      expect(await synchronous(full)).toBe(2); // FULL
      expect(await synchronous(normal)).toBe(1); // NORMAL
    } finally {
      await full.close();
      await normal.close();
    }
  });

  it('is read from RUNCELL_DB_SYNC, and a value it does not know is refused', () => {
    expect(loadConfig({}).dbSync).toBe('full');
    expect(loadConfig({ RUNCELL_DB_SYNC: 'normal' }).dbSync).toBe('normal');
    expect(() => loadConfig({ RUNCELL_DB_SYNC: 'off' })).toThrow(/RUNCELL_DB_SYNC/);
  });
});
