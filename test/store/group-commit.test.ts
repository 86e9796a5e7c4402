/** The store's group commit: writes of one turn share a transaction, and a bad one fails alone. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { criticalResult } from '../../src/engine/cell-result.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { tempDir } from '../helpers.ts';

describe('SqliteStore group commit', () => {
  it('commits writes made at once together, and a failing one fails only itself', async () => {
    const store = new SqliteStore(join(tempDir(), 'runcell.db'));
    await store.init();
    try {
      const at = new Date().toISOString();
      const cells = [{ cellId: 'a', code: '1', language: 'python' }];
      const ids = Array.from({ length: 20 }, (_, i) => `s${i}`);
      await Promise.all(
        ids.map((id) =>
          store.createSubmission({
            id,
            notebookId: `nb-${id}`,
            cells,
            timeoutSeconds: 5,
            stopOnError: true,
            createdAt: at,
          }),
        ),
      );
      const result = { ...criticalResult('a', 'python', 'x', false), type: 'output' as const, output: '1' };
      const finish = { state: 'success' as const, at, reason: null };
      const writes = ids.map((id) => store.addResult(id, 0, result, { startedAt: at, finish }));
      // The same seq again: a duplicate result is refused, never an overwrite.
      writes.push(store.addResult('s3', 0, result, { startedAt: at, finish }));
      const settled = await Promise.allSettled(writes);
      expect(settled.filter((s) => s.status === 'rejected')).toHaveLength(1);
      expect(settled.at(-1)!.status).toBe('rejected');
      for (const id of ids) {
        const stored = await store.getSubmission(id);
        expect(stored).toMatchObject({ state: 'success', startedAt: at });
        expect(stored!.results).toHaveLength(1);
      }
    } finally {
      await store.close();
    }
  });
});
