/**
 * The Store queries, written once over Kysely so that every SQL backend shares them.
 * Backends only build the Kysely instance (see SqliteStore).
 */
import { Kysely, Migrator, type MigrationProvider, type Selectable } from 'kysely';
import type { CellResult, NewSubmission, Store, Submission, SubmissionState } from './store.ts';
import { migrations, type Database } from './schema.ts';

const provider: MigrationProvider = { getMigrations: async () => migrations };

export class KyselyStore implements Store {
  protected readonly db: Kysely<Database>;
  #closed: Promise<void> | undefined;

  constructor(db: Kysely<Database>) {
    this.db = db;
  }

  async init(): Promise<void> {
    const { error } = await new Migrator({ db: this.db, provider }).migrateToLatest();
    if (error) throw error;
  }

  async createSubmission(s: NewSubmission): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
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

  async getSubmission(id: string): Promise<Submission | undefined> {
    const row = await this.db.selectFrom('submissions').selectAll().where('id', '=', id).executeTakeFirst();
    return row && this.#withResults(row);
  }

  async markRunning(id: string, at: string): Promise<void> {
    await this.db
      .updateTable('submissions')
      .set({ state: 'running', started_at: at })
      .where('id', '=', id)
      .where('state', '=', 'pending')
      .execute();
  }

  async addResult(submissionId: string, seq: number, result: CellResult): Promise<void> {
    await this.db
      .insertInto('results')
      .values({ submission_id: submissionId, seq, cell_id: result.cellId, body: JSON.stringify(result) })
      .execute();
  }

  async finishSubmission(
    id: string,
    state: SubmissionState,
    at: string,
    reason: string | null,
  ): Promise<void> {
    await this.db
      .updateTable('submissions')
      .set({ state, finished_at: at, reason })
      .where('id', '=', id)
      .execute();
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
