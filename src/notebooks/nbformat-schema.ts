/**
 * The nbformat 4.5 JSON schema, compiled once with Ajv. The schema file is copied unchanged from
 * Debian's python3-nbformat 5.5.0 (/usr/lib/python3/dist-packages/nbformat/v4/
 * nbformat.v4.5.schema.json; BSD-3-Clause, see nbformat-schema.LICENSE). It declares draft-04, which
 * Ajv 8 does not ship: it uses no keyword whose meaning changed since, so it is compiled as the
 * default draft.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

const SCHEMA_ID = 'nbformat.v4.5';

const schemaFile = new URL('./nbformat.v4.5.schema.json', import.meta.url);

const ajv = new Ajv({ allErrors: false, strict: false });
const { $schema: _draft, ...schema } = JSON.parse(readFileSync(schemaFile, 'utf8'));
ajv.addSchema({ ...schema, $id: SCHEMA_ID });

const part = (pointer: string): ValidateFunction => ajv.compile({ $ref: `${SCHEMA_ID}#${pointer}` });

export const validators = {
  notebook: ajv.getSchema(SCHEMA_ID)!,
  metadata: part('/properties/metadata'),
  raw: part('/definitions/raw_cell'),
  markdown: part('/definitions/markdown_cell'),
  code: part('/definitions/code_cell'),
  output: part('/definitions/output'),
  execute_result: part('/definitions/execute_result'),
  display_data: part('/definitions/display_data'),
  stream: part('/definitions/stream'),
  error: part('/definitions/error'),
};

/** The first error of a validator's last run, as `<path>: <rule>`, the path under `base`. */
export function describeError(validate: ValidateFunction, base = ''): string {
  const error: ErrorObject | undefined = validate.errors?.[0];
  const path = `${base}${error?.instancePath ?? ''}` || '/';
  if (!error) return `${path}: invalid`;
  let rule = error.message ?? 'invalid';
  if (error.keyword === 'additionalProperties')
    rule += ` (${JSON.stringify(error.params.additionalProperty)})`;
  if (error.keyword === 'enum')
    rule += `: ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  return `${path}: ${rule}`;
}
