/**
 * A notebook's server-side document and the edits on it. Cells are nbformat 4.5 cells with every
 * multiline string joined into one string (what nbformat calls "rejoined"), so that a source is
 * edited as text; ipynb.ts splits them again on export. Every edit checks the cell it produces
 * against the nbformat schema, so a document can always be exported as a valid .ipynb.
 */
import { randomUUID } from 'node:crypto';
import { RuncellError } from '../errors.ts';
import { describeError, validators } from './nbformat-schema.ts';

/** Limits of one document (docs/errors.md, DOCUMENT_TOO_LARGE, states them). */
export const LIMITS = {
  cells: 1000,
  sourceBytes: 1 << 20,
  /** The whole document as stored (JSON), outputs included. */
  documentBytes: 16 << 20,
};

/** nbformat 4.5's cell id rule. */
export const CELL_ID_PATTERN = '^[a-zA-Z0-9_-]{1,64}$';
const CELL_ID = new RegExp(CELL_ID_PATTERN);

export type CellType = 'code' | 'markdown' | 'raw';
export const CELL_TYPES: readonly CellType[] = ['code', 'markdown', 'raw'];

export type Json = Record<string, unknown>;

export interface DocumentCell {
  id: string;
  cell_type: CellType;
  source: string;
  metadata: Json;
  /** Markdown and raw cells. */
  attachments?: Json;
  /** Code cells. */
  outputs?: Json[];
  execution_count?: number | null;
}

export interface NotebookDocument {
  id: string;
  /** Grows by one with every change a client can see. */
  version: number;
  metadata: Json;
  cells: DocumentCell[];
  /** The execution count given last; the next cell run gets one more. */
  executionCount: number;
  /** Runs whose results have not all landed: submission id → id of the last event landed. */
  runs: Record<string, string | null>;
  createdAt: string;
  updatedAt: string;
}

/** Notebook metadata naming a language, as Jupyter writes it. */
export function languageMetadata(language: string): Json {
  const display = { python: 'Python 3', javascript: 'JavaScript', typescript: 'TypeScript' }[language];
  return {
    kernelspec: {
      name: language === 'python' ? 'python3' : language,
      display_name: display ?? language,
      language,
    },
    language_info: { name: language },
  };
}

/** The language cells of the document run in: language_info.name, else kernelspec.language. */
export function documentLanguage(doc: NotebookDocument): string | undefined {
  const info = doc.metadata.language_info as Json | undefined;
  const spec = doc.metadata.kernelspec as Json | undefined;
  const name = info?.name ?? spec?.language;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

export function newCellId(doc: Pick<NotebookDocument, 'cells'>): string {
  for (;;) {
    const id = randomUUID().replaceAll('-', '').slice(0, 8);
    if (!doc.cells.some((c) => c.id === id)) return id;
  }
}

export function cellIndex(doc: NotebookDocument, cellId: string): number {
  const index = doc.cells.findIndex((c) => c.id === cellId);
  if (index < 0)
    throw new RuncellError('DOCUMENT_CELL_NOT_FOUND', `the document has no cell ${JSON.stringify(cellId)}`);
  return index;
}

export function checkIndex(index: number, max: number, what = 'index'): void {
  if (!Number.isInteger(index) || index < 0 || index > max) {
    throw new RuncellError('DOCUMENT_INDEX_INVALID', `${what} ${index} is outside 0..${max}`);
  }
}

/** Throws unless the cell is a valid nbformat 4.5 cell within the limits. `path` names it. */
export function checkCell(cell: DocumentCell, path: string): void {
  if (Buffer.byteLength(cell.source) > LIMITS.sourceBytes) {
    throw new RuncellError('DOCUMENT_TOO_LARGE', `${path}/source is larger than ${LIMITS.sourceBytes} bytes`);
  }
  const validate = validators[cell.cell_type];
  if (!validate(cell))
    throw new RuncellError('DOCUMENT_INVALID', `not valid nbformat 4.5: ${describeError(validate, path)}`);
}

function checkId(doc: NotebookDocument, id: string): void {
  if (!CELL_ID.test(id))
    throw new RuncellError('REQUEST_INVALID', `cell id ${JSON.stringify(id)} must match ${CELL_ID_PATTERN}`);
  if (doc.cells.some((c) => c.id === id))
    throw new RuncellError('REQUEST_INVALID', `the document already has a cell ${id}`);
}

/** A cell of another type keeps its id, source and metadata; only code cells have outputs. */
function withType(cell: DocumentCell, type: CellType): DocumentCell {
  const { id, source, metadata } = cell;
  if (type === 'code') return { id, cell_type: type, source, metadata, outputs: [], execution_count: null };
  return {
    id,
    cell_type: type,
    source,
    metadata,
    ...(cell.attachments ? { attachments: cell.attachments } : {}),
  };
}

export interface NewCell {
  index?: number;
  id?: string;
  cell_type?: CellType;
  source?: string;
  metadata?: Json;
}

/** Inserts a cell (at the end without an index). */
export function insertCell(doc: NotebookDocument, input: NewCell): { index: number; cell: DocumentCell } {
  if (doc.cells.length >= LIMITS.cells) {
    throw new RuncellError('DOCUMENT_TOO_LARGE', `a document holds at most ${LIMITS.cells} cells`);
  }
  const index = input.index ?? doc.cells.length;
  checkIndex(index, doc.cells.length);
  const id = input.id ?? newCellId(doc);
  checkId(doc, id);
  const cell = withType(
    { id, cell_type: 'code', source: input.source ?? '', metadata: input.metadata ?? {} },
    input.cell_type ?? 'code',
  );
  checkCell(cell, `/cells/${index}`);
  doc.cells.splice(index, 0, cell);
  return { index, cell };
}

export interface CellEdit {
  source?: string;
  metadata?: Json;
  cell_type?: CellType;
  /** Only [] (clears the outputs and the execution count). */
  outputs?: [];
}

/** Edits a cell in place: each given field replaces the cell's. */
export function editCell(doc: NotebookDocument, cellId: string, edit: CellEdit): DocumentCell {
  const index = cellIndex(doc, cellId);
  let cell = { ...doc.cells[index]! };
  if (edit.cell_type !== undefined && edit.cell_type !== cell.cell_type)
    cell = withType(cell, edit.cell_type);
  if (edit.source !== undefined) cell.source = edit.source;
  if (edit.metadata !== undefined) cell.metadata = edit.metadata;
  if (edit.outputs !== undefined) {
    if (cell.cell_type !== 'code')
      throw new RuncellError('REQUEST_INVALID', `cell ${cellId} is not a code cell: it has no outputs`);
    cell.outputs = [];
    cell.execution_count = null;
  }
  checkCell(cell, `/cells/${index}`);
  doc.cells[index] = cell;
  return cell;
}

export function deleteCell(doc: NotebookDocument, cellId: string): number {
  const index = cellIndex(doc, cellId);
  doc.cells.splice(index, 1);
  return index;
}

/** Moves a cell so that it ends up at `index` (0..cells-1). */
export function moveCell(
  doc: NotebookDocument,
  cellId: string,
  index: number,
): { from: number; index: number } {
  const from = cellIndex(doc, cellId);
  checkIndex(index, doc.cells.length - 1);
  const [cell] = doc.cells.splice(from, 1);
  doc.cells.splice(index, 0, cell!);
  return { from, index };
}

export function setMetadata(doc: NotebookDocument, metadata: Json): void {
  if (!validators.metadata(metadata)) {
    throw new RuncellError(
      'DOCUMENT_INVALID',
      `not valid nbformat 4.5: ${describeError(validators.metadata, '/metadata')}`,
    );
  }
  doc.metadata = metadata;
}

const OUTPUT_TYPES = ['execute_result', 'display_data', 'stream', 'error'] as const;

/** Why the output is not valid nbformat 4.5, or undefined when it is. `path` names it. */
export function outputProblem(output: unknown, path: string): string | undefined {
  const type = (output as Json | null)?.output_type;
  const name = OUTPUT_TYPES.find((t) => t === type);
  if (!name) return `${path}/output_type: must be one of ${OUTPUT_TYPES.map((t) => `"${t}"`).join(', ')}`;
  const validate = validators[name];
  return validate(output) ? undefined : describeError(validate, path);
}
