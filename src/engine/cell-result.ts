/** Turns what a kernel did with a cell into the recorded result (Pennant's type and text). */
import type { ExecResult } from '../kernels/kernel.ts';
import type { CellResult, JupyterOutput } from '../store/store.ts';
import type { Language } from './languages.ts';

const joinLines = (lines: string[]) => lines.map((l) => (l.endsWith('\n') ? l : l + '\n')).join('');

function withLine(text: string, line: string): string {
  if (text === '') return line;
  return (text.endsWith('\n') ? text : text + '\n') + line;
}

export interface CellContext {
  cellId: string;
  language: Language;
  startedAt: string;
  timeoutSeconds: number;
  contextLost: boolean;
}

export function toCellResult(exec: ExecResult, ctx: CellContext): CellResult {
  const { outcome, output } = exec;
  const outputs: JupyterOutput[] = output.outputs;
  const base = {
    cellId: ctx.cellId,
    language: ctx.language,
    executed: true,
    droppedBytes: output.droppedBytes,
    timedOut: exec.timedOut,
    startedAt: ctx.startedAt,
    durationMs: Math.round(exec.durationMs * 1000) / 1000,
  };
  switch (outcome.status) {
    case 'ok': {
      let text = output.text;
      if (outcome.value !== null) {
        text = withLine(text, outcome.value);
        outputs.push({ output_type: 'execute_result', data: { 'text/plain': outcome.value }, metadata: {} });
      }
      return { ...base, type: 'output', output: text, outputs, contextLost: ctx.contextLost };
    }
    case 'error': {
      let text = withLine(
        output.text,
        joinLines(outcome.traceback) || `${outcome.ename}: ${outcome.evalue}\n`,
      );
      if (exec.timedOut) {
        text += `[runcell] the cell timed out after ${ctx.timeoutSeconds} s and was interrupted; the context was kept\n`;
      }
      outputs.push({
        output_type: 'error',
        ename: outcome.ename,
        evalue: outcome.evalue,
        traceback: outcome.traceback,
      });
      return { ...base, type: 'error', output: text, outputs, contextLost: ctx.contextLost };
    }
    case 'dead': {
      const why = exec.timedOut
        ? `the cell timed out after ${ctx.timeoutSeconds} s and did not stop when interrupted, so its kernel was killed`
        : outcome.why;
      const text = withLine(output.text, `[runcell] ${why}; the notebook's context was reset\n`);
      outputs.push({ output_type: 'error', ename: 'KernelDied', evalue: why, traceback: [] });
      return { ...base, type: 'critical', output: text, outputs, contextLost: true };
    }
  }
}

/** A critical result for a cell the server could not run at all. */
export function criticalResult(
  cellId: string,
  language: Language,
  why: string,
  executed: boolean,
): CellResult {
  return {
    cellId,
    language,
    type: 'critical',
    output: `[runcell] ${why}\n`,
    executed,
    outputs: [{ output_type: 'error', ename: 'RuncellError', evalue: why, traceback: [] }],
    droppedBytes: 0,
    timedOut: false,
    contextLost: true,
    startedAt: new Date().toISOString(),
    durationMs: 0,
  };
}
