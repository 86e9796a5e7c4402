/** Formatting by language: the languages the format endpoint takes, each with its formatter. */
import { formatWithPrettier } from './prettier-formatter.ts';
import { formatPython, type FormatResult } from './python-formatter.ts';

export const FORMAT_LANGUAGES = ['python', 'javascript', 'typescript', 'java'] as const;
export type FormatLanguage = (typeof FORMAT_LANGUAGES)[number];

export const isFormatLanguage = (language: string): language is FormatLanguage =>
  (FORMAT_LANGUAGES as readonly string[]).includes(language);

/** Formats code in-process; a syntax error is `{ok: false, error: 'line L, column C: ...'}`. */
export async function formatCode(language: FormatLanguage, code: string): Promise<FormatResult> {
  return language === 'python' ? formatPython(code) : formatWithPrettier(language, code);
}
