/** SqliteStore: the embedded Store, one SQLite file in the data directory. */
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { KyselyStore } from './kysely-store.ts';
import type { Database as Tables } from './schema.ts';

export class SqliteStore extends KyselyStore {
  /** `file` is a path, or ':memory:' for tests. */
  constructor(file: string) {
    const sqlite = new Database(file);
    // WAL lets readers (status polls) proceed while a result is written. synchronous=FULL keeps
    // the promise that a result is durable before it is announced, even across power loss.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('busy_timeout = 5000');
    super(new Kysely<Tables>({ dialect: new SqliteDialect({ database: sqlite }) }));
  }
}
