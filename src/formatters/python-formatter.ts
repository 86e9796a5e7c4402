/**
 * Python formatting in black's style, in-process: ruff's formatter compiled to WebAssembly.
 * No Python, no subprocess, nothing of the user's code ever executes.
 */
import { format } from '@wasm-fmt/ruff_fmt';

export type FormatResult = { ok: true; formatted: string } | { ok: false; error: string };

export function formatPython(code: string): FormatResult {
  try {
    return { ok: true, formatted: format(code) };
  } catch (err) {
    return { ok: false, error: describe(String(err), code) };
  }
}

/** ruff reports UTF-8 byte ranges; people want a line and a column. */
function describe(message: string, code: string): string {
  const m = /^(.*) at byte range (\d+)\.\.(\d+)$/s.exec(message);
  if (!m) return message;
  const before = Buffer.from(code).subarray(0, Number(m[2])).toString('utf8');
  const lines = before.split('\n');
  return `line ${lines.length}, column ${lines.at(-1)!.length + 1}: ${m[1]}`;
}
