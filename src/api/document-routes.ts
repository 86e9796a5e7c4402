/**
 * Server-side notebook documents: create (empty or from an .ipynb), read, edit cells, run them
 * through the engine, export as .ipynb. Every change answers with the document's new `version`
 * and is announced on the notebook's feed (/api/v1/notebooks/:id/events and /ws) as
 * `document.changed`; `ifVersion` makes a change conditional (409 when another came first).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { RuncellError } from '../errors.ts';
import { writeIpynb } from '../notebooks/ipynb.ts';
import { CELL_ID_PATTERN, CELL_TYPES, LIMITS } from '../notebooks/notebook-document.ts';
import type { NotebookDocuments } from '../notebooks/notebook-documents.ts';
import { errorResponses, Id } from './schemas.ts';

const IPYNB_TYPE = 'application/x-ipynb+json';

const CellId = Type.String({
  pattern: CELL_ID_PATTERN,
  description: 'Cell id (nbformat 4.5: 1-64 of A-Z a-z 0-9 _ -)',
});
const Metadata = Type.Record(Type.String(), Type.Unknown());
const CellType = Type.Union(
  CELL_TYPES.map((t) => Type.Literal(t)),
  { description: 'code (default), markdown or raw' },
);
const Source = Type.String({ description: `Source text, at most ${LIMITS.sourceBytes} bytes` });
const IfVersion = Type.Optional(
  Type.Integer({ minimum: 0, description: 'Apply only if the document is at this version (else 409)' }),
);
const Index = Type.Integer({ minimum: 0 });

const Cell = Type.Object(
  {
    id: Type.String(),
    cell_type: Type.String(),
    source: Type.String(),
    metadata: Metadata,
    outputs: Type.Optional(Type.Array(Metadata, { description: 'nbformat outputs (code cells)' })),
    execution_count: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
    attachments: Type.Optional(Metadata),
  },
  { additionalProperties: true },
);

const DocumentView = Type.Object({
  id: Type.String(),
  version: Type.Integer({ description: 'Grows by one with each change' }),
  seq: Type.Integer({ description: "The notebook feed's position: follow its events from here" }),
  nbformat: Type.Literal(4),
  nbformat_minor: Type.Literal(5),
  metadata: Metadata,
  cells: Type.Array(Cell),
  kernel: Type.Object({ language: Type.Union([Type.String(), Type.Null()]), state: Type.String() }),
  runs: Type.Array(Type.String(), { description: 'Submissions whose results have not all landed' }),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});

const CreateEmpty = Type.Object(
  {
    id: Type.Optional(Id('Notebook id; the server picks one without it')),
    language: Type.Optional(
      Type.String({ description: 'Language of its cells (default: the server default)' }),
    ),
  },
  { additionalProperties: false },
);

const RunOptions = {
  timeout: Type.Optional(
    Type.Number({ exclusiveMinimum: 0, description: 'Seconds per cell, capped by the server' }),
  ),
  stopOnError: Type.Optional(
    Type.Boolean({ description: 'Stop at the first cell that fails (default true)' }),
  ),
  interactive: Type.Optional(
    Type.Boolean({ description: 'A client on the notebook WebSocket answers input() (default false)' }),
  ),
  ifVersion: IfVersion,
};

const RunReply = Type.Object({
  submissionId: Type.String(),
  cellIds: Type.Array(Type.String()),
  version: Type.Integer(),
});

const conflict = { 409: Type.Ref('Error') };
const tooLarge = { 413: Type.Ref('Error') };

function check<T extends TSchema>(schema: T, value: unknown, what: string): Static<T> {
  if (Value.Check(schema, value)) return value;
  const first = [...Value.Errors(schema, value)][0];
  throw new RuncellError(
    'REQUEST_INVALID',
    `invalid ${what}: ${first?.path || '/'} ${first?.message ?? ''}`.trim(),
  );
}

/**
 * A whole document, serialised by JSON.stringify: Fastify's schema serialiser is slow on the
 * open-ended parts (metadata, outputs), several times JSON.stringify's time on a large notebook.
 */
const sendJson = (reply: FastifyReply, status: number, body: unknown) =>
  reply.code(status).type('application/json; charset=utf-8').send(JSON.stringify(body));

export function documentRoutes(documents: NotebookDocuments) {
  return async function (app: FastifyInstance) {
    app.addContentTypeParser(IPYNB_TYPE, { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));
    app.addHook('onClose', () => documents.close());
    // A bodyless POST (run, with no options) is an empty object to the schemas.
    app.addHook('preValidation', async (req) => {
      req.body ??= {};
    });

    const tags = ['notebooks'];
    const params = Type.Object({ notebookId: Id('Notebook id') });
    const cellParams = Type.Object({ notebookId: Id('Notebook id'), cellId: CellId });
    type P = { notebookId: string };
    type CP = { notebookId: string; cellId: string };

    app.post<{ Querystring: { id?: string }; Body: Record<string, unknown> }>(
      '/api/v1/notebooks',
      {
        // An imported notebook may be as large as a document may grow.
        bodyLimit: LIMITS.documentBytes,
        schema: {
          tags,
          summary: 'Create a document: empty ({id?, language?}) or from an .ipynb (nbformat 4) as the body',
          description: `A body with an "nbformat" field is a notebook to import (also as ${IPYNB_TYPE}); its id comes from ?id=.`,
          querystring: Type.Object({ id: Type.Optional(Id('Notebook id')) }),
          body: Type.Object({}, { additionalProperties: true }),
          response: { 201: DocumentView, ...conflict, ...tooLarge, ...errorResponses },
        },
      },
      async (req, reply) => {
        const body = req.body;
        const view =
          'nbformat' in body
            ? await documents.create({ id: req.query.id, ipynb: body })
            : await documents.create({ id: req.query.id, ...check(CreateEmpty, body, 'body') });
        return sendJson(reply, 201, view);
      },
    );

    app.get<{ Params: P }>(
      '/api/v1/notebooks/:notebookId',
      {
        schema: {
          tags,
          summary: 'The whole document: cells, outputs, metadata, kernel state, version and feed position',
          params,
          response: { 200: DocumentView, ...errorResponses },
        },
      },
      async (req, reply) => sendJson(reply, 200, await documents.view(req.params.notebookId)),
    );

    app.patch<{ Params: P; Body: { metadata: Record<string, unknown>; ifVersion?: number } }>(
      '/api/v1/notebooks/:notebookId',
      {
        schema: {
          tags,
          summary: "Replace the notebook's metadata",
          params,
          body: Type.Object({ metadata: Metadata, ifVersion: IfVersion }, { additionalProperties: false }),
          response: { 200: Type.Object({ version: Type.Integer() }), ...conflict, ...errorResponses },
        },
      },
      async (req) => documents.setMetadata(req.params.notebookId, req.body.metadata, req.body.ifVersion),
    );

    app.get<{ Params: P }>(
      '/api/v1/notebooks/:notebookId/export',
      {
        schema: {
          tags,
          summary: 'The document as an .ipynb file (nbformat 4.5, as Jupyter writes it)',
          params,
          response: { 200: { description: IPYNB_TYPE, type: 'string' }, ...errorResponses },
        },
      },
      async (req, reply) => {
        const { notebookId } = req.params;
        const text = writeIpynb(await documents.exportIpynb(notebookId));
        return reply
          .type(IPYNB_TYPE)
          .header('content-disposition', `attachment; filename="${notebookId}.ipynb"`)
          .send(text);
      },
    );

    app.post<{
      Params: P;
      Body: {
        index?: number;
        id?: string;
        cell_type?: 'code' | 'markdown' | 'raw';
        source?: string;
        metadata?: Record<string, unknown>;
        ifVersion?: number;
      };
    }>(
      '/api/v1/notebooks/:notebookId/cells',
      {
        schema: {
          tags,
          summary: 'Insert a cell at index (at the end without one)',
          params,
          body: Type.Object(
            {
              index: Type.Optional(Index),
              id: Type.Optional(CellId),
              cell_type: Type.Optional(CellType),
              source: Type.Optional(Source),
              metadata: Type.Optional(Metadata),
              ifVersion: IfVersion,
            },
            { additionalProperties: false },
          ),
          response: {
            201: Type.Object({ version: Type.Integer(), index: Type.Integer(), cell: Cell }),
            ...conflict,
            ...tooLarge,
            ...errorResponses,
          },
        },
      },
      async (req, reply) => {
        const { ifVersion, ...cell } = req.body;
        return reply.code(201).send(await documents.insertCell(req.params.notebookId, cell, ifVersion));
      },
    );

    app.get<{ Params: CP }>(
      '/api/v1/notebooks/:notebookId/cells/:cellId',
      {
        schema: {
          tags,
          summary: 'One cell, with its outputs',
          params: cellParams,
          response: { 200: Cell, ...errorResponses },
        },
      },
      async (req) => documents.cell(req.params.notebookId, req.params.cellId),
    );

    app.patch<{
      Params: CP;
      Body: {
        source?: string;
        metadata?: Record<string, unknown>;
        cell_type?: 'code' | 'markdown' | 'raw';
        outputs?: [];
        ifVersion?: number;
      };
    }>(
      '/api/v1/notebooks/:notebookId/cells/:cellId',
      {
        schema: {
          tags,
          summary: "Edit a cell: each field given replaces the cell's; outputs: [] clears them",
          params: cellParams,
          body: Type.Object(
            {
              source: Type.Optional(Source),
              metadata: Type.Optional(Metadata),
              cell_type: Type.Optional(CellType),
              outputs: Type.Optional(
                Type.Array(Type.Unknown(), { maxItems: 0, description: 'Only []: clears the outputs' }),
              ),
              ifVersion: IfVersion,
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({ version: Type.Integer(), cell: Cell }),
            ...conflict,
            ...tooLarge,
            ...errorResponses,
          },
        },
      },
      async (req) => {
        const { ifVersion, ...edit } = req.body;
        return documents.editCell(req.params.notebookId, req.params.cellId, edit, ifVersion);
      },
    );

    app.delete<{ Params: CP; Querystring: { ifVersion?: string } }>(
      '/api/v1/notebooks/:notebookId/cells/:cellId',
      {
        schema: {
          tags,
          summary: 'Delete a cell',
          params: cellParams,
          querystring: Type.Object({
            ifVersion: Type.Optional(
              Type.String({ pattern: '^[0-9]{1,15}$', description: 'As ifVersion in bodies' }),
            ),
          }),
          response: {
            200: Type.Object({ version: Type.Integer(), index: Type.Integer() }),
            ...conflict,
            ...errorResponses,
          },
        },
      },
      async (req) => {
        const { ifVersion } = req.query;
        return documents.deleteCell(
          req.params.notebookId,
          req.params.cellId,
          ifVersion === undefined ? undefined : Number(ifVersion),
        );
      },
    );

    app.post<{ Params: CP; Body: { index: number; ifVersion?: number } }>(
      '/api/v1/notebooks/:notebookId/cells/:cellId/move',
      {
        schema: {
          tags,
          summary: 'Move a cell so that it ends up at index',
          params: cellParams,
          body: Type.Object({ index: Index, ifVersion: IfVersion }, { additionalProperties: false }),
          response: {
            200: Type.Object({ version: Type.Integer(), from: Type.Integer(), index: Type.Integer() }),
            ...conflict,
            ...errorResponses,
          },
        },
      },
      async (req) =>
        documents.moveCell(req.params.notebookId, req.params.cellId, req.body.index, req.body.ifVersion),
    );

    app.post<{
      Params: CP;
      Body: { timeout?: number; stopOnError?: boolean; interactive?: boolean; ifVersion?: number };
    }>(
      '/api/v1/notebooks/:notebookId/cells/:cellId/run',
      {
        schema: {
          tags,
          summary: 'Run a code cell; its outputs land in the document when it finishes',
          params: cellParams,
          body: Type.Object(RunOptions, { additionalProperties: false }),
          response: { 202: RunReply, ...conflict, ...errorResponses },
        },
      },
      async (req, reply) => {
        const run = await documents.runCell(req.params.notebookId, req.params.cellId, req.body);
        return reply.code(202).send(run);
      },
    );

    app.post<{
      Params: P;
      Body: {
        from?: number;
        to?: number;
        timeout?: number;
        stopOnError?: boolean;
        interactive?: boolean;
        ifVersion?: number;
      };
    }>(
      '/api/v1/notebooks/:notebookId/run',
      {
        schema: {
          tags,
          summary: 'Run the code cells with index in [from, to) (default: all), in order, as one submission',
          params,
          body: Type.Object(
            { from: Type.Optional(Index), to: Type.Optional(Index), ...RunOptions },
            { additionalProperties: false },
          ),
          response: { 202: RunReply, ...conflict, ...errorResponses },
        },
      },
      async (req, reply) => {
        const { from, to, ...options } = req.body;
        return reply.code(202).send(await documents.runRange(req.params.notebookId, { from, to }, options));
      },
    );
  };
}
