/** SqliteStore: the embedded Store, one SQLite file in the data directory. */
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { KyselyStore } from './kysely-store.ts';
import type { Database as Tables } from './schema.ts';

const MAX_CACHED_STATEMENTS = 500;

/**
 * Kysely prepares every query anew; preparing costs about as much as running the small queries
 * of a cell. The same SQL text reuses its statement (safe: better-sqlite3 runs one at a time).
 */
function cacheStatements(sqlite: Database.Database): void {
  const prepare = sqlite.prepare.bind(sqlite);
  const cache = new Map<string, Database.Statement>();
  sqlite.prepare = ((source: string) => {
    let statement = cache.get(source);
    if (!statement) {
      statement = prepare(source);
      if (cache.size < MAX_CACHED_STATEMENTS) cache.set(source, statement);
    }
    return statement;
  }) as typeof sqlite.prepare;
}

export class SqliteStore extends KyselyStore {
  /** `file` is a path, or ':memory:' for tests. */
  constructor(file: string, sync: 'full' | 'normal' = 'full') {
    const sqlite = new Database(file);
    // WAL lets readers (status polls) proceed while a result is written. synchronous=FULL keeps
    // the promise that a result is durable before it is announced, even across power loss;
    // NORMAL (WAL) keeps it across a crash of the server only, without an fsync per commit.
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma(`synchronous = ${sync === 'normal' ? 'NORMAL' : 'FULL'}`);
    sqlite.pragma('busy_timeout = 5000');
    cacheStatements(sqlite);
    super(new Kysely<Tables>({ dialect: new SqliteDialect({ database: sqlite }) }));
  }
}
