/**
 * The Store queries, written once over Kysely so that every SQL backend shares them.
 * Backends only build the Kysely instance (see SqliteStore).
 */
import { Kysely, Migrator, type MigrationProvider, type Selectable, type Transaction } from 'kysely';
import type {
  CellResult,
  Job,
  JobQuery,
  NewSubmission,
  ResultProgress,
  Store,
  StoredDocument,
  Submission,
  SubmissionState,
} from './store.ts';
import { migrations, type Database } from './schema.ts';

const provider: MigrationProvider = { getMigrations: async () => migrations };

type Write = (tx: Transaction<Database>) => Promise<void>;

export class KyselyStore implements Store {
  protected readonly db: Kysely<Database>;
  /** Writes waiting for the next group commit (see #write). */
  readonly #batch: { apply: Write; resolve: () => void; reject: (err: unknown) => void }[] = [];
  #closed: Promise<void> | undefined;

  constructor(db: Kysely<Database>) {
    this.db = db;
  }

  async init(): Promise<void> {
    const { error } = await new Migrator({ db: this.db, provider }).migrateToLatest();
    if (error) throw error;
  }

  createSubmission(s: NewSubmission): Promise<void> {
    return this.#write(async (tx) => {
      await tx
        .insertInto('notebooks')
        .values({ id: s.notebookId, created_at: s.createdAt })
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
      await tx
        .insertInto('submissions')
        .values({
          id: s.id,
          notebook_id: s.notebookId,
          state: 'pending',
          cells: JSON.stringify(s.cells),
          timeout_seconds: s.timeoutSeconds,
          stop_on_error: s.stopOnError ? 1 : 0,
          created_at: s.createdAt,
          started_at: null,
          finished_at: null,
          reason: null,
        })
        .execute();
    });
  }

  /**
   * Group commit: the writes asked for in one turn of the event loop (many notebooks' results
   * at once) share one transaction, so one fsync; each resolves only once it is committed. If
   * the batch fails, each write is retried alone, so one bad write fails only itself.
   */
  #write(apply: Write): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#batch.push({ apply, resolve, reject });
      if (this.#batch.length === 1) setImmediate(() => void this.#flush());
    });
  }

  async #flush(): Promise<void> {
    const batch = this.#batch.splice(0);
    try {
      await this.db.transaction().execute(async (tx) => {
        for (const write of batch) await write.apply(tx);
      });
      for (const write of batch) write.resolve();
    } catch {
      for (const write of batch) {
        await this.db
          .transaction()
          .execute((tx) => write.apply(tx))
          .then(write.resolve, write.reject);
      }
    }
  }

  async getSubmission(id: string): Promise<Submission | undefined> {
    const row = await this.db.selectFrom('submissions').selectAll().where('id', '=', id).executeTakeFirst();
    return row && this.#withResults(row);
  }

  async addResult(
    submissionId: string,
    seq: number,
    result: CellResult,
    { startedAt, finish }: ResultProgress,
  ): Promise<void> {
    await this.#write(async (tx) => {
      await tx
        .insertInto('results')
        .values({ submission_id: submissionId, seq, cell_id: result.cellId, body: JSON.stringify(result) })
        .execute();
      await tx
        .updateTable('submissions')
        .set((eb) => ({
          started_at: eb.fn.coalesce('started_at', eb.val(startedAt)),
          ...(finish
            ? { state: finish.state, finished_at: finish.at, reason: finish.reason }
            : { state: 'running' }),
        }))
        .where('id', '=', submissionId)
        .execute();
    });
  }

  async finishSubmission(
    id: string,
    state: SubmissionState,
    at: string,
    reason: string | null,
  ): Promise<void> {
    await this.#write(async (tx) => {
      await tx
        .updateTable('submissions')
        .set({ state, finished_at: at, reason })
        .where('id', '=', id)
        .execute();
    });
  }

  async listUnfinished(): Promise<Submission[]> {
    const rows = await this.db
      .selectFrom('submissions')
      .selectAll()
      .where('state', 'in', ['pending', 'running'])
      .orderBy('created_at')
      .execute();
    return Promise.all(rows.map((row) => this.#withResults(row)));
  }

  async hasNotebook(notebookId: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('notebooks')
      .select('id')
      .where('id', '=', notebookId)
      .executeTakeFirst();
    return row !== undefined;
  }

  async addNotebook(notebookId: string, at: string): Promise<void> {
    await this.db
      .insertInto('notebooks')
      .values({ id: notebookId, created_at: at })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
  }

  async createDocument(d: StoredDocument): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      await tx
        .insertInto('notebooks')
        .values({ id: d.notebookId, created_at: d.createdAt })
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
      const inserted = await tx
        .insertInto('documents')
        .values({
          notebook_id: d.notebookId,
          version: d.version,
          body: d.body,
          created_at: d.createdAt,
          updated_at: d.updatedAt,
        })
        .onConflict((oc) => oc.column('notebook_id').doNothing())
        .executeTakeFirst();
      return Number(inserted.numInsertedOrUpdatedRows ?? 0) > 0;
    });
  }

  async getDocument(notebookId: string): Promise<StoredDocument | undefined> {
    const row = await this.db
      .selectFrom('documents')
      .selectAll()
      .where('notebook_id', '=', notebookId)
      .executeTakeFirst();
    return (
      row && {
        notebookId: row.notebook_id,
        version: row.version,
        body: row.body,
        createdAt: row.created_at,
        updatedAt: row.updated_at,
      }
    );
  }

  async updateDocument(notebookId: string, version: number, body: string, at: string): Promise<void> {
    await this.db
      .updateTable('documents')
      .set({ version, body, updated_at: at })
      .where('notebook_id', '=', notebookId)
      .execute();
  }

  async saveJob(job: Job): Promise<void> {
    const row = {
      id: job.id,
      ref: job.ref,
      state: job.state,
      language: job.language,
      created_at: job.createdAt,
      body: JSON.stringify(job),
    };
    await this.db
      .insertInto('jobs')
      .values(row)
      .onConflict((oc) => oc.column('id').doUpdateSet({ state: row.state, body: row.body }))
      .execute();
  }

  async getJob(id: string): Promise<Job | undefined> {
    const row = await this.db.selectFrom('jobs').select('body').where('id', '=', id).executeTakeFirst();
    return row && (JSON.parse(row.body) as Job);
  }

  async listJobs(q: JobQuery): Promise<Job[]> {
    let query = this.db.selectFrom('jobs').select('body');
    if (q.state !== undefined) query = query.where('state', '=', q.state);
    if (q.language !== undefined) query = query.where('language', '=', q.language);
    if (q.ref !== undefined) query = query.where('ref', '=', q.ref);
    if (q.since !== undefined) query = query.where('created_at', '>=', q.since);
    if (q.after !== undefined) {
      const { createdAt, id } = q.after;
      query = query.where((eb) =>
        eb.or([
          eb('created_at', '<', createdAt),
          eb.and([eb('created_at', '=', createdAt), eb('id', '<', id)]),
        ]),
      );
    }
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(q.limit).execute();
    return rows.map((r) => JSON.parse(r.body) as Job);
  }

  async listUnfinishedJobs(): Promise<Job[]> {
    const rows = await this.db
      .selectFrom('jobs')
      .select('body')
      .where('state', 'in', ['queued', 'running'])
      .orderBy('created_at')
      .execute();
    return rows.map((r) => JSON.parse(r.body) as Job);
  }

  close(): Promise<void> {
    return (this.#closed ??= this.db.destroy());
  }

  async #withResults(row: Selectable<Database['submissions']>): Promise<Submission> {
    const results = await this.db
      .selectFrom('results')
      .select('body')
      .where('submission_id', '=', row.id)
      .orderBy('seq')
      .execute();
    return {
      id: row.id,
      notebookId: row.notebook_id,
      state: row.state as SubmissionState,
      cells: JSON.parse(row.cells),
      timeoutSeconds: row.timeout_seconds,
      stopOnError: row.stop_on_error === 1,
      createdAt: row.created_at,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
      reason: row.reason,
      results: results.map((r) => JSON.parse(r.body) as CellResult),
    };
  }
}
