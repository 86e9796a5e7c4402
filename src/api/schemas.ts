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
