/** JSON schemas shared by routes; they are also the OpenAPI description. */
import { Type } from '@sinclair/typebox';
import { ID_PATTERN } from '../engine/ids.ts';

export const Id = (description: string) =>
  Type.String({ pattern: ID_PATTERN, description: `${description} (1-128 of A-Z a-z 0-9 . _ : -)` });

export const ErrorResponse = Type.Object(
  {
    error: Type.String({ description: 'What is wrong, for people' }),
    code: Type.String({ description: 'Stable code, see docs/errors.md' }),
    statusCode: Type.Integer(),
  },
  { $id: 'Error' },
);

export const errorResponses = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  404: Type.Ref('Error'),
  500: Type.Ref('Error'),
};

const Seconds = Type.Union([
  Type.Number({ exclusiveMinimum: 0 }),
  Type.String({ pattern: '^\\s*[0-9]+(\\.[0-9]+)?\\s*$' }),
]);

/** POST /api/submit (and the WebSocket execute command). */
export const SubmitBody = Type.Object({
  notebookId: Id('Notebook id, chosen by the client'),
  cells: Type.Array(
    Type.Object({
      cellId: Id('Cell id, chosen by the client'),
      code: Type.String({ description: 'Source of the cell' }),
      language: Type.Optional(
        Type.String({ description: 'Language of this cell; overrides the submission' }),
      ),
    }),
    { minItems: 1 },
  ),
  timeout: Type.Optional(
    Type.Unsafe<number | string>({ ...Seconds, description: 'Seconds per cell, capped by the server' }),
  ),
  language: Type.Optional(
    Type.String({
      description:
        'A runtime of GET /api/v1/runtimes, by language or alias, optionally @version: python (the default), javascript, typescript, java, java@17, jupyter:python3, ...',
    }),
  ),
  stopOnError: Type.Optional(
    Type.Boolean({ description: 'Stop at the first cell that fails (default true)' }),
  ),
});
