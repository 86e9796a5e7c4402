/**
 * NotebookDocuments: the server-side documents of notebooks. Each change is applied to the
 * stored document under a per-notebook lock, written to the Store, then announced on the
 * notebook's feed as `document.changed` with the new version, so every client converges. Runs go
 * through the engine like any submission; their results land in the document as the engine
 * announces them. A run's progress is kept in the document, so results that a restart kept from
 * landing land when the document is next read (the engine replays them from the Store).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Engine } from '../engine/engine.ts';
import type { FeedEvent, NotebookFeed } from '../engine/notebook-feed.ts';
import { resolveKernel, type Runtime } from '../engine/runtimes.ts';
import type { SubmissionEvent } from '../engine/submission-events.ts';
import { RuncellError } from '../errors.ts';
import type { CellResult, Store } from '../store/store.ts';
import { exportIpynb, importIpynb, type Ipynb } from './ipynb.ts';
import {
  cellIndex,
  checkIndex,
  deleteCell,
  documentLanguage,
  editCell,
  insertCell,
  languageMetadata,
  LIMITS,
  moveCell,
  outputProblem,
  setMetadata,
  type CellEdit,
  type DocumentCell,
  type Json,
  type NewCell,
  type NotebookDocument,
} from './notebook-document.ts';

/** Outputs larger than this (JSON) are left out of document.changed: clients GET the cell. */
const MAX_EVENT_OUTPUT_BYTES = 64 << 10;
/** Parsed documents kept in memory, by their stored size (the most recently used first). */
const CACHE_BYTES = 64 << 20;

export interface NotebookDocumentsDeps {
  store: Store;
  engine: Engine;
  feed: NotebookFeed;
  runtimes: Runtime[];
  defaultLanguage: string;
  log: FastifyBaseLogger;
}

export interface KernelView {
  language: string | null;
  /** The last kernel.state of the document's language, `none` when no kernel runs. */
  state: string;
}

export interface DocumentView {
  id: string;
  version: number;
  /** Feed position: follow the notebook's events from here (`?lastEventId=seq`). */
  seq: number;
  nbformat: 4;
  nbformat_minor: 5;
  metadata: Json;
  cells: DocumentCell[];
  kernel: KernelView;
  /** Runs whose results have not all landed yet. */
  runs: string[];
  createdAt: string;
  updatedAt: string;
}

export interface RunOptions {
  timeout?: number;
  stopOnError?: boolean;
  interactive?: boolean;
  ifVersion?: number;
}

interface Watch {
  stop?: () => void;
  done: boolean;
}

/** What a change did: the fields of its document.changed event (none: nothing to announce). */
interface Applied<T> {
  event?: Json;
  reply: T;
}

export class NotebookDocuments {
  readonly #store: Store;
  readonly #engine: Engine;
  readonly #feed: NotebookFeed;
  readonly #runtimes: Runtime[];
  readonly #defaultLanguage: string;
  readonly #log: FastifyBaseLogger;
  /** The tail of each notebook's chain of changes: one change at a time per document. */
  readonly #chains = new Map<string, Promise<unknown>>();
  readonly #watching = new Map<string, Watch>();
  /**
   * Committed documents (as stored), least recently used first. Never changed in place: a
   * change works on a copy (#working), which replaces the entry once it is stored.
   */
  readonly #cache = new Map<string, { doc: NotebookDocument; bytes: number }>();
  #cachedBytes = 0;
  #closing = false;

  constructor(deps: NotebookDocumentsDeps) {
    this.#store = deps.store;
    this.#engine = deps.engine;
    this.#feed = deps.feed;
    this.#runtimes = deps.runtimes;
    this.#defaultLanguage = deps.defaultLanguage;
    this.#log = deps.log;
  }

  /** An empty document in `language`, or one imported from an .ipynb. */
  async create(input: { id?: string; language?: string; ipynb?: unknown }): Promise<DocumentView> {
    const id = input.id ?? randomUUID();
    const { metadata, cells } =
      input.ipynb === undefined
        ? { metadata: languageMetadata(this.#resolve(input.language ?? this.#defaultLanguage)), cells: [] }
        : importIpynb(input.ipynb);
    const now = new Date().toISOString();
    const doc: NotebookDocument = {
      id,
      version: 1,
      metadata,
      cells,
      executionCount: 0,
      runs: {},
      createdAt: now,
      updatedAt: now,
    };
    const body = serialise(doc);
    await this.#serial(id, async () => {
      const created = await this.#store.createDocument({
        notebookId: id,
        version: 1,
        body,
        createdAt: now,
        updatedAt: now,
      });
      if (!created) throw new RuncellError('DOCUMENT_EXISTS', `notebook ${id} already has a document`);
      this.#remember(doc, body.length);
      this.#feed.publish(id, { type: 'document.changed', version: 1, op: 'create' });
    });
    return this.view(id);
  }

  async view(id: string): Promise<DocumentView> {
    // The feed position first, then the document: every change announced up to `seq` is in it
    // (changes are stored before they are announced). A change between the two comes again on
    // the feed, with a version the client already has: clients skip versions they hold.
    const events = this.#feed.since(id, 0) as FeedEvent[];
    const doc = await this.#load(id);
    const language = documentLanguage(doc) ?? this.#defaultLanguage;
    return {
      id,
      version: doc.version,
      seq: events.at(-1)?.seq ?? 0,
      nbformat: 4,
      nbformat_minor: 5,
      metadata: doc.metadata,
      cells: doc.cells,
      kernel: await this.#kernel(id, language, events),
      runs: Object.keys(doc.runs),
      createdAt: doc.createdAt,
      updatedAt: doc.updatedAt,
    };
  }

  async cell(id: string, cellId: string): Promise<DocumentCell> {
    const doc = await this.#load(id);
    return doc.cells[cellIndex(doc, cellId)]!;
  }

  async exportIpynb(id: string): Promise<Ipynb> {
    return exportIpynb(await this.#load(id));
  }

  setMetadata(id: string, metadata: Json, ifVersion?: number): Promise<{ version: number }> {
    return this.#change(id, ifVersion, (doc) => {
      setMetadata(doc, metadata);
      return { event: { op: 'metadata', metadata }, reply: {} };
    });
  }

  insertCell(id: string, input: NewCell, ifVersion?: number) {
    return this.#change(id, ifVersion, (doc) => {
      const { index, cell } = insertCell(doc, input);
      return { event: { op: 'insert', index, cell }, reply: { index, cell } };
    });
  }

  editCell(id: string, cellId: string, edit: CellEdit, ifVersion?: number) {
    return this.#change(id, ifVersion, (doc) => {
      const cell = editCell(doc, cellId, edit);
      return { event: { op: 'edit', cellId, ...edit }, reply: { cell } };
    });
  }

  deleteCell(id: string, cellId: string, ifVersion?: number) {
    return this.#change(id, ifVersion, (doc) => {
      const index = deleteCell(doc, cellId);
      return { event: { op: 'delete', cellId }, reply: { index } };
    });
  }

  moveCell(id: string, cellId: string, index: number, ifVersion?: number) {
    return this.#change(id, ifVersion, (doc) => {
      const moved = moveCell(doc, cellId, index);
      return { event: { op: 'move', cellId, index }, reply: moved };
    });
  }

  /** Runs one code cell. */
  runCell(id: string, cellId: string, options: RunOptions) {
    return this.#run(id, options, (doc) => {
      const cell = doc.cells[cellIndex(doc, cellId)]!;
      if (cell.cell_type !== 'code') {
        throw new RuncellError(
          'REQUEST_INVALID',
          `cell ${cellId} is a ${cell.cell_type} cell: only code cells run`,
        );
      }
      return [cell];
    });
  }

  /** Runs the code cells with index in [from, to) (all by default), in document order. */
  runRange(id: string, range: { from?: number; to?: number }, options: RunOptions) {
    return this.#run(id, options, (doc) => {
      const from = range.from ?? 0;
      const to = range.to ?? doc.cells.length;
      checkIndex(from, doc.cells.length, 'from');
      checkIndex(to, doc.cells.length, 'to');
      if (to < from) throw new RuncellError('DOCUMENT_INDEX_INVALID', `to (${to}) is before from (${from})`);
      const cells = doc.cells.slice(from, to).filter((c) => c.cell_type === 'code');
      if (cells.length === 0) throw new RuncellError('REQUEST_INVALID', `no code cell in [${from}, ${to})`);
      return cells;
    });
  }

  /** Stops landing results (the next start lands what is left) and waits for changes under way. */
  async close(): Promise<void> {
    this.#closing = true;
    for (const watch of this.#watching.values()) watch.stop?.();
    await Promise.all(this.#chains.values());
  }

  #run(id: string, options: RunOptions, pick: (doc: NotebookDocument) => DocumentCell[]) {
    return this.#serial(id, async () => {
      const doc = working(await this.#load(id));
      checkVersion(doc, options.ifVersion);
      const cells = pick(doc);
      const submissionId = await this.#engine.submit({
        notebookId: id,
        cells: cells.map((c) => ({ cellId: c.id, code: c.source })),
        language: documentLanguage(doc),
        timeout: options.timeout,
        stopOnError: options.stopOnError,
        interactive: options.interactive,
      });
      doc.runs[submissionId] = null;
      await this.#commit(doc, serialise(doc));
      this.#watch(id, submissionId, null);
      return { submissionId, cellIds: cells.map((c) => c.id), version: doc.version };
    });
  }

  /** Follows a run's results (from after `lastId`) into the document. */
  #watch(id: string, submissionId: string, lastId: string | null): void {
    if (this.#closing || this.#watching.has(submissionId)) return;
    const watch: Watch = { done: false };
    this.#watching.set(submissionId, watch);
    const finish = () => {
      if (watch.done) return;
      watch.done = true;
      watch.stop?.();
      void this.#endRun(id, submissionId);
    };
    const onEvent = (event: SubmissionEvent) => {
      if (event.type === 'cell.finished')
        void this.#land(id, submissionId, event.id, event.cellId, event.result);
      else if (event.type === 'submission.finished') finish();
    };
    this.#engine.subscribe(submissionId, lastId ?? undefined, onEvent).then(
      (stop) => {
        if (!stop) return finish(); // the Store no longer has it: nothing will land
        watch.stop = stop;
        if (watch.done || this.#closing) stop();
      },
      (err) => this.#log.error({ err, notebookId: id, submissionId }, 'could not follow a run'),
    );
  }

  async #land(id: string, submissionId: string, eventId: string, cellId: string, result: CellResult) {
    if (this.#closing) return;
    try {
      await this.#change(id, undefined, (doc) => {
        doc.runs[submissionId] = eventId;
        const index = doc.cells.findIndex((c) => c.id === cellId);
        if (doc.cells[index]?.cell_type !== 'code') return { reply: {} }; // deleted or retyped meanwhile
        const fresh = result.contextLost && result.type !== 'critical';
        const count = result.executed ? (fresh ? 1 : doc.executionCount + 1) : null;
        if (count !== null) doc.executionCount = count;
        const cell = { ...doc.cells[index]!, outputs: landedOutputs(result, count), execution_count: count };
        doc.cells[index] = cell;
        return { event: outputsEvent(cell, submissionId), reply: {} };
      });
    } catch (err) {
      this.#log.error({ err, notebookId: id, submissionId }, 'could not land a result in the document');
    }
  }

  async #endRun(id: string, submissionId: string): Promise<void> {
    try {
      if (this.#closing) return;
      await this.#change(id, undefined, (doc) => {
        delete doc.runs[submissionId];
        return { reply: {} };
      });
    } catch (err) {
      this.#log.error({ err, notebookId: id, submissionId }, 'could not record the end of a run');
    } finally {
      this.#watching.delete(submissionId);
    }
  }

  /**
   * Applies a change to the stored document: checks `ifVersion`, applies, writes, announces.
   * An applied change with an event is a new version; one without only updates bookkeeping.
   */
  #change<T extends object>(
    id: string,
    ifVersion: number | undefined,
    apply: (doc: NotebookDocument) => Applied<T>,
  ): Promise<T & { version: number }> {
    return this.#serial(id, async () => {
      const doc = working(await this.#load(id));
      checkVersion(doc, ifVersion);
      const { event, reply } = apply(doc);
      if (event) {
        doc.version++;
        doc.updatedAt = new Date().toISOString();
      }
      let body = JSON.stringify(doc);
      if (event?.op === 'outputs' && !fits(body)) {
        // Outputs that would take the document past its limit are replaced by a note saying so.
        const index = doc.cells.findIndex((c) => c.id === event.cellId);
        const cell = { ...doc.cells[index]!, outputs: [tooLargeNote()] };
        doc.cells[index] = cell;
        Object.assign(event, outputsEvent(cell, event.submissionId as string));
        body = JSON.stringify(doc);
      }
      if (!fits(body)) throw tooLarge();
      await this.#commit(doc, body);
      if (event) this.#feed.publish(id, { type: 'document.changed', version: doc.version, ...event });
      return { ...reply, version: doc.version };
    });
  }

  #serial<T>(id: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(id) ?? Promise.resolve();
    const result = previous.then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#chains.set(id, tail);
    void tail.then(() => {
      if (this.#chains.get(id) === tail) this.#chains.delete(id);
    });
    return result;
  }

  /** The committed document: read it, never change it. */
  async #load(id: string): Promise<NotebookDocument> {
    const cached = this.#cache.get(id);
    if (cached) {
      this.#cache.delete(id); // re-inserted last: the map is in LRU order
      this.#cache.set(id, cached);
      return cached.doc;
    }
    const stored = await this.#store.getDocument(id);
    if (!stored) throw new RuncellError('DOCUMENT_NOT_FOUND', `notebook ${id} has no document`);
    const doc = JSON.parse(stored.body) as NotebookDocument;
    // A change committed while this read was under way is newer: keep that one.
    if (!this.#cache.has(id)) this.#remember(doc, stored.body.length);
    // Runs a previous server left in progress: the engine replays their results from the Store.
    for (const [submissionId, lastId] of Object.entries(doc.runs)) this.#watch(id, submissionId, lastId);
    return this.#cache.get(id)?.doc ?? doc;
  }

  /** Stores the changed document, then makes it the committed one. */
  async #commit(doc: NotebookDocument, body: string): Promise<void> {
    await this.#store.updateDocument(doc.id, doc.version, body, doc.updatedAt);
    this.#remember(doc, body.length);
  }

  #remember(doc: NotebookDocument, bytes: number): void {
    const old = this.#cache.get(doc.id);
    if (old) {
      this.#cache.delete(doc.id);
      this.#cachedBytes -= old.bytes;
    }
    this.#cache.set(doc.id, { doc, bytes });
    this.#cachedBytes += bytes;
    for (const [id, entry] of this.#cache) {
      if (this.#cachedBytes <= CACHE_BYTES || id === doc.id) break;
      this.#cache.delete(id);
      this.#cachedBytes -= entry.bytes;
    }
  }

  async #kernel(id: string, language: string, events: FeedEvent[]): Promise<KernelView> {
    let name: string;
    try {
      name = this.#resolve(language);
    } catch {
      return { language: null, state: 'none' }; // no runtime here for the document's language
    }
    const last = events.filter((e) => e.type === 'kernel.state' && e.language === name).at(-1);
    const { active } = await this.#engine.notebookStatus(id);
    const state = typeof last?.state === 'string' ? last.state : 'none';
    return { language: name, state: !active && state !== 'dead' ? 'none' : state };
  }

  #resolve(language: string): string {
    return resolveKernel(this.#runtimes, language);
  }
}

/**
 * A copy of a committed document to change: the cell list, runs and metadata are new objects,
 * and changes replace cells rather than edit them, so readers of the committed one never see a
 * change before it is stored.
 */
function working(doc: NotebookDocument): NotebookDocument {
  return { ...doc, cells: [...doc.cells], runs: { ...doc.runs } };
}

function checkVersion(doc: NotebookDocument, ifVersion: number | undefined): void {
  if (ifVersion !== undefined && ifVersion !== doc.version) {
    throw new RuncellError(
      'DOCUMENT_VERSION_CONFLICT',
      `the document is at version ${doc.version}, not ${ifVersion}`,
    );
  }
}

const fits = (body: string) => Buffer.byteLength(body) <= LIMITS.documentBytes;

const tooLarge = () =>
  new RuncellError('DOCUMENT_TOO_LARGE', `the document would pass ${LIMITS.documentBytes} bytes`);

/** The document as stored, or a 413 past the size limit. */
function serialise(doc: NotebookDocument): string {
  const body = JSON.stringify(doc);
  if (!fits(body)) throw tooLarge();
  return body;
}

function outputsEvent(cell: DocumentCell, submissionId: string): Json {
  const event: Json = { op: 'outputs', cellId: cell.id, submissionId, execution_count: cell.execution_count };
  if (JSON.stringify(cell.outputs).length <= MAX_EVENT_OUTPUT_BYTES) event.outputs = cell.outputs;
  else event.outputsOmitted = true;
  return event;
}

/**
 * A result's outputs as nbformat keeps them: execute_result gets its execution count, and an
 * output that is not valid nbformat (kernels are untrusted) is replaced by a note saying why.
 */
function landedOutputs(result: CellResult, count: number | null): Json[] {
  return result.outputs.map((output, i) => {
    const landed: Json =
      output.output_type === 'execute_result' ? { ...output, execution_count: count } : { ...output };
    const problem = outputProblem(landed, `/outputs/${i}`);
    if (!problem) return landed;
    return {
      output_type: 'stream',
      name: 'stderr',
      text: `[runcell] an output was left out: it is not valid nbformat (${problem})\n`,
    };
  });
}

const tooLargeNote = (): Json => ({
  output_type: 'stream',
  name: 'stderr',
  text: `[runcell] the outputs were left out: they would take the document past ${LIMITS.documentBytes} bytes; clear other outputs to keep more\n`,
});
