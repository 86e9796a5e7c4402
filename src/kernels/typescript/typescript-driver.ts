import { transform } from 'esbuild';
import type { CellError } from '../kernel-driver.ts';
import { JavascriptDriver } from '../javascript/javascript-driver.ts';

/**
 * TypeScript cells: the JavaScript kernel (V8 REPL mode: re-declarable const/let/class,
 * top-level await), with each cell's types stripped on the server by esbuild first. Types are not
 * checked; a cell that does not parse is reported with its line and column.
 */
export class TypescriptDriver extends JavascriptDriver {
  override readonly language = 'typescript' as const;

  async transform(code: string): Promise<{ code: string } | { error: CellError }> {
    try {
      // No format: statements stay top-level statements, so REPL semantics hold.
      const out = await transform(code, { loader: 'ts', sourcefile: 'cell.ts', target: 'esnext' });
      return { code: out.code };
    } catch (err) {
      const errors = (
        err as { errors?: { text: string; location?: { line: number; column: number; lineText: string } }[] }
      ).errors;
      const first = errors?.[0];
      if (!first) throw err;
      const where = first.location
        ? `cell.ts:${first.location.line}:${first.location.column + 1}`
        : 'cell.ts';
      const caret = first.location ? [first.location.lineText, `${' '.repeat(first.location.column)}^`] : [];
      return {
        error: {
          ename: 'SyntaxError',
          evalue: `${first.text} (${where})`,
          traceback: [`${where}`, ...caret, `SyntaxError: ${first.text}`],
        },
      };
    }
  }
}
