/** Table types and migrations shared by every Kysely-backed store. */
import type { Kysely, Migration } from 'kysely';

export interface Database {
  notebooks: { id: string; created_at: string };
  submissions: {
    id: string;
    notebook_id: string;
    state: string;
    cells: string; // JSON SubmittedCell[]
    timeout_seconds: number;
    stop_on_error: number;
    created_at: string;
    started_at: string | null;
    finished_at: string | null;
    reason: string | null;
  };
  results: {
    submission_id: string;
    seq: number;
    cell_id: string;
    body: string; // JSON CellResult
  };
  documents: {
    notebook_id: string;
    version: number;
    body: string; // JSON of the document (src/notebooks/notebook-document.ts)
    created_at: string;
    updated_at: string;
  };
  jobs: {
    id: string;
    /** The client's own reference (EDC's uuid), when it gave one. */
    ref: string | null;
    state: string;
    language: string | null;
    created_at: string;
    body: string; // JSON Job
  };
}

export const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('notebooks')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('submissions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('notebook_id', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('cells', 'text', (c) => c.notNull())
        .addColumn('timeout_seconds', 'integer', (c) => c.notNull())
        .addColumn('stop_on_error', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addColumn('reason', 'text')
        .execute();
      await db.schema.createIndex('submissions_state').on('submissions').column('state').execute();
      await db.schema
        .createIndex('submissions_notebook')
        .on('submissions')
        .columns(['notebook_id', 'created_at'])
        .execute();
      await db.schema
        .createTable('results')
        .addColumn('submission_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'integer', (c) => c.notNull())
        .addColumn('cell_id', 'text', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('results_pk', ['submission_id', 'seq'])
        .execute();
    },
  },
  '0002_jobs': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('jobs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('ref', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('language', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .execute();
      // Lists are newest first, paged by (created_at, id).
      await db.schema.createIndex('jobs_created').on('jobs').columns(['created_at', 'id']).execute();
      await db.schema.createIndex('jobs_state').on('jobs').column('state').execute();
      await db.schema.createIndex('jobs_ref').on('jobs').column('ref').execute();
    },
  },
  '0003_documents': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('documents')
        .addColumn('notebook_id', 'text', (c) => c.primaryKey())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
};
