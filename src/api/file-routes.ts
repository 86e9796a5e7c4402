/**
 * Files of a notebook's workspace: `GET` lists a directory (JSON) or downloads a file, `PUT`
 * uploads one (the raw body; parent directories are created), `DELETE` removes a file or a whole
 * directory. Paths are relative to the workspace; symlinks are never followed.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import type { Engine } from '../engine/engine.ts';
import { RuncellError } from '../errors.ts';
import type { WorkspaceFiles } from '../files/workspace-files.ts';
import { errorResponses, Id } from './schemas.ts';

const MAX_PATH = 4096;

interface Params {
  notebookId: string;
  '*': string;
}

export function fileRoutes(engine: Engine, files: WorkspaceFiles) {
  return async function (app: FastifyInstance) {
    // Uploads are bytes, whatever their type says (a .json file must not be parsed): the body is
    // the raw request stream, and its size limit is the files' own (maxUploadBytes).
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

    const params = Type.Object({ notebookId: Id('Notebook id'), '*': Type.String({ maxLength: MAX_PATH }) });
    const tags = ['files'];
    const known = async (notebookId: string) => {
      if (!(await engine.notebookStatus(notebookId)).known) {
        throw new RuncellError('NOTEBOOK_NOT_FOUND', `notebook ${notebookId} has never been seen`);
      }
    };

    app.get<{ Params: Params }>(
      '/api/v1/notebooks/:notebookId/files/*',
      {
        schema: {
          tags,
          summary: 'List a workspace directory (path empty or ending in /) or download a file',
          params,
          response: { ...errorResponses },
        },
      },
      async (req, reply) => {
        const { notebookId, '*': path } = req.params;
        await known(notebookId);
        if (path === '' || path.endsWith('/')) return { path, entries: await files.list(notebookId, path) };
        try {
          const stream = await files.read(notebookId, path);
          return reply.type('application/octet-stream').send(stream);
        } catch (err) {
          if (err instanceof RuncellError && err.code === 'RUNCELL_ERR_FILE_WRONG_TYPE') {
            return { path: `${path}/`, entries: await files.list(notebookId, path) };
          }
          throw err;
        }
      },
    );

    app.put<{ Params: Params }>(
      '/api/v1/notebooks/:notebookId/files/*',
      {
        schema: {
          tags,
          summary: 'Upload a file into the workspace (the raw request body)',
          params,
          response: { 201: Type.Object({ path: Type.String(), size: Type.Integer() }), ...errorResponses },
        },
      },
      async (req, reply) => {
        const { notebookId, '*': path } = req.params;
        if (path === '' || path.endsWith('/')) {
          throw new RuncellError('FILE_PATH_INVALID', 'upload to a file path, not a directory');
        }
        await engine.addNotebook(notebookId);
        const size = await files.write(notebookId, path, req.body as Readable);
        return reply.code(201).send({ path, size });
      },
    );

    app.delete<{ Params: Params }>(
      '/api/v1/notebooks/:notebookId/files/*',
      {
        schema: {
          tags,
          summary: 'Delete a file or a directory tree of the workspace',
          params,
          response: { 200: Type.Object({ path: Type.String() }), ...errorResponses },
        },
      },
      async (req) => {
        const { notebookId, '*': path } = req.params;
        await known(notebookId);
        await files.remove(notebookId, path);
        return { path };
      },
    );
  };
}
