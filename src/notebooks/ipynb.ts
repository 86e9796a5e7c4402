/**
 * .ipynb in and out. Import checks an nbformat 4 notebook against the 4.5 schema (older minors
 * get cell ids first, as nbformat's upgrade does) and joins multiline strings; export splits them
 * into lines and writes keys sorted with a one-space indent, as nbformat's writer does, so a
 * notebook Jupyter saved comes back byte for byte.
 */
import { RuncellError } from '../errors.ts';
import { describeError, validators } from './nbformat-schema.ts';
import {
  CELL_TYPES,
  LIMITS,
  newCellId,
  outputProblem,
  type DocumentCell,
  type Json,
  type NotebookDocument,
} from './notebook-document.ts';

export interface Ipynb {
  nbformat: 4;
  nbformat_minor: 5;
  metadata: Json;
  cells: Json[];
}

const invalid = (detail: string) => new RuncellError('DOCUMENT_INVALID', `invalid ipynb: ${detail}`);

/** The notebook's metadata and cells, or DOCUMENT_INVALID naming the first bad path. */
export function importIpynb(input: unknown): { metadata: Json; cells: DocumentCell[] } {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalid('/: must be object');
  const nb = input as Json;
  if (nb.nbformat !== 4) throw invalid(`/nbformat: must be 4 (this server reads nbformat 4 notebooks)`);
  if (!Number.isInteger(nb.nbformat_minor) || (nb.nbformat_minor as number) < 0)
    throw invalid('/nbformat_minor: must be a non-negative integer');
  if (!Array.isArray(nb.cells)) throw invalid('/cells: must be array');
  if (nb.cells.length > LIMITS.cells)
    throw new RuncellError('DOCUMENT_TOO_LARGE', `a document holds at most ${LIMITS.cells} cells`);
  const cells = nb.cells as unknown[];
  if ((nb.nbformat_minor as number) < 5) {
    // Ids are unique within the notebook, also beside the ids some cells may carry already.
    const taken = { cells: cells.filter((c) => c && typeof c === 'object' && 'id' in c) as DocumentCell[] };
    for (const cell of cells) {
      if (cell && typeof cell === 'object' && !('id' in cell)) {
        (cell as Json).id = newCellId(taken);
        taken.cells.push(cell as DocumentCell);
      }
    }
  }
  const upgraded = { ...nb, nbformat_minor: 5 };
  if (!validators.notebook(upgraded)) throw invalid(explain(upgraded, cells));
  const seen = new Map<string, number>();
  cells.forEach((cell, i) => {
    const id = (cell as DocumentCell).id;
    if (seen.has(id)) throw invalid(`/cells/${i}/id: duplicates the id of cell ${seen.get(id)} (${id})`);
    seen.set(id, i);
  });
  const joined = cells.map((cell) => rejoin(cell as Json));
  joined.forEach((cell, i) => {
    if (Buffer.byteLength(cell.source) > LIMITS.sourceBytes)
      throw new RuncellError(
        'DOCUMENT_TOO_LARGE',
        `/cells/${i}/source is larger than ${LIMITS.sourceBytes} bytes`,
      );
  });
  return { metadata: nb.metadata as Json, cells: joined };
}

/**
 * The most precise error: the schema's oneOf over cell and output types would only say "must
 * match exactly one schema", so each cell and output is checked against its own type's definition.
 */
function explain(nb: Json, cells: unknown[]): string {
  for (const [i, cell] of cells.entries()) {
    const type = CELL_TYPES.find((t) => t === (cell as Json | null)?.cell_type);
    if (!type) return `/cells/${i}/cell_type: must be one of "code", "markdown", "raw"`;
    const outputs = (cell as Json).outputs;
    if (type === 'code' && Array.isArray(outputs)) {
      for (const [j, output] of outputs.entries()) {
        const problem = outputProblem(output, `/cells/${i}/outputs/${j}`);
        if (problem) return problem;
      }
    }
    const validate = validators[type];
    if (!validate(cell)) return describeError(validate, `/cells/${i}`);
  }
  return describeError(validators.notebook);
}

const joinText = (value: unknown) => (Array.isArray(value) ? value.join('') : value);

/** JSON mime types (application/json, application/*+json) hold data, not text: never joined or split. */
const isJsonMime = (mime: string) => /^application\/(.*\+)?json$/.test(mime);
/** Mime types nbformat splits into lines besides text/*. */
const SPLIT_MIMES = new Set(['application/javascript', 'image/svg+xml']);

function mapBundle(bundle: unknown, f: (mime: string, value: unknown) => unknown): Json {
  return Object.fromEntries(Object.entries(bundle as Json).map(([mime, value]) => [mime, f(mime, value)]));
}

const joinBundle = (bundle: unknown) =>
  mapBundle(bundle, (mime, value) =>
    !isJsonMime(mime) && Array.isArray(value) && value.every((l) => typeof l === 'string')
      ? value.join('')
      : value,
  );

const splitBundle = (bundle: unknown) =>
  mapBundle(bundle, (mime, value) =>
    typeof value === 'string' && (mime.startsWith('text/') || SPLIT_MIMES.has(mime))
      ? splitLines(value)
      : value,
  );

/** nbformat's rejoin_lines for one cell. */
function rejoin(cell: Json): DocumentCell {
  const out: Json = { ...cell, source: joinText(cell.source) };
  if (cell.attachments) out.attachments = mapBundle(cell.attachments, (_, bundle) => joinBundle(bundle));
  if (Array.isArray(cell.outputs))
    out.outputs = cell.outputs.map((o: Json) => mapOutput(o, joinBundle, joinText));
  return out as unknown as DocumentCell;
}

function mapOutput(output: Json, bundle: (b: unknown) => Json, text: (t: unknown) => unknown): Json {
  if (output.output_type === 'execute_result' || output.output_type === 'display_data')
    return { ...output, data: bundle(output.data) };
  if (output.output_type === 'stream') return { ...output, text: text(output.text) };
  return output;
}

/** Python's str.splitlines(keepends=True), which nbformat uses. */
function splitLines(text: string): string[] {
  const lines: string[] = [];
  let start = 0;
  for (const m of text.matchAll(/\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]/g)) {
    const end = m.index + m[0].length;
    lines.push(text.slice(start, end));
    start = end;
  }
  if (start < text.length) lines.push(text.slice(start));
  return lines;
}

/** The document as nbformat 4.5 (nbformat's split_lines applied). */
export function exportIpynb(doc: NotebookDocument): Ipynb {
  const cells = doc.cells.map((cell) => {
    const out: Json = { ...cell, source: splitLines(cell.source) };
    if (cell.attachments) out.attachments = mapBundle(cell.attachments, (_, bundle) => splitBundle(bundle));
    if (cell.outputs)
      out.outputs = cell.outputs.map((o) =>
        mapOutput(o, splitBundle, (t) => (typeof t === 'string' ? splitLines(t) : t)),
      );
    return out;
  });
  return { cells, metadata: doc.metadata, nbformat: 4, nbformat_minor: 5 };
}

/** JSON as nbformat writes it: keys sorted, one-space indent, a final newline. */
export function writeIpynb(nb: Ipynb): string {
  return JSON.stringify(nb, (_, value) => (isPlainObject(value) ? sortKeys(value) : value), 1) + '\n';
}

const isPlainObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function sortKeys(value: Json): Json {
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, value[k]]),
  );
}
