/**
 * POST /api/v1/format: code formatted in-process (ruff's formatter for Python, Prettier for
 * JavaScript, TypeScript and Java). Nothing is run: no kernel, no sandbox. The body is bounded
 * by Fastify's bodyLimit, which bounds the formatter's work.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { RuncellError } from '../errors.ts';
import { formatCode, FORMAT_LANGUAGES, isFormatLanguage } from '../formatters/format-code.ts';
import { errorResponses } from './schemas.ts';

const FormatBody = Type.Object({
  language: Type.String({ description: `One of ${FORMAT_LANGUAGES.join(', ')}` }),
  code: Type.String({ description: 'Source to format' }),
});

export function formatRoutes() {
  return async function (app: FastifyInstance) {
    app.post<{ Body: Static<typeof FormatBody> }>(
      '/api/v1/format',
      {
        schema: {
          tags: ['format'],
          summary: 'Format code: Python in black style (ruff), JavaScript, TypeScript and Java (Prettier)',
          body: FormatBody,
          response: { 200: Type.Object({ formatted_code: Type.String() }), ...errorResponses },
        },
      },
      async (req) => {
        const { language, code } = req.body;
        if (!isFormatLanguage(language))
          throw new RuncellError(
            'LANGUAGE_UNSUPPORTED',
            `cannot format ${JSON.stringify(language)}: the formatter takes ${FORMAT_LANGUAGES.join(', ')}`,
          );
        const result = await formatCode(language, code);
        if (!result.ok) throw new RuncellError('FORMAT_SYNTAX_ERROR', `invalid ${language}: ${result.error}`);
        return { formatted_code: result.formatted };
      },
    );
  };
}
