/** Turns what a kernel did with a cell into the recorded result (Pennant's type and text). */
import type { ExecResult } from '../kernels/kernel.ts';
import { truncateUtf8, type OutputBuffer } from '../kernels/output-buffer.ts';
import type { CellResult, JupyterOutput } from '../store/store.ts';
import type { Language } from './languages.ts';

const joinLines = (lines: string[]) => lines.map((l) => (l.endsWith('\n') ? l : l + '\n')).join('');

function withLine(text: string, line: string): string {
  if (text === '' || line === '') return text + line;
  return (text.endsWith('\n') ? text : text + '\n') + line;
}

/**
 * What a Pennant client shows of a display: its text/plain (`<Figure size 640x480 with 1 Axes>`),
 * else the kinds of data it holds (`[image/png]`).
 */
function displayLine(data: Record<string, unknown>): string {
  const plain = data['text/plain'];
  const mimes = Object.keys(data);
  const line = typeof plain === 'string' ? plain : mimes.length > 0 ? `[${mimes.join(', ')}]` : '';
  return line === '' || line.endsWith('\n') ? line : line + '\n';
}

/** stdout and stderr interleaved, each display as a line of its own. */
function outputText(outputs: JupyterOutput[]): string {
  let text = '';
  for (const o of outputs) {
    if (o.output_type === 'stream') text += o.text;
    else if (o.output_type === 'display_data') text = withLine(text, displayLine(o.data));
  }
  return text;
}

/** The cell's output, then its value or error (from the same byte budget), then the marker. */
function finalText(output: OutputBuffer, tail: string): string {
  return withLine(withLine(outputText(output.outputs), tail), output.marker);
}

const limitText = (limit: 'timeout' | 'cpu-time', ctx: CellContext) =>
  limit === 'timeout'
    ? `the cell timed out after ${ctx.timeoutSeconds} s`
    : `the cell used more than ${ctx.cpuSeconds} s of CPU time`;

export interface CellContext {
  cellId: string;
  language: Language;
  startedAt: string;
  timeoutSeconds: number;
  cpuSeconds: number;
  contextLost: boolean;
}

export function toCellResult(exec: ExecResult, ctx: CellContext): CellResult {
  const { outcome, output } = exec;
  const outputs: JupyterOutput[] = output.outputs;
  const result = (type: CellResult['type'], text: string, contextLost: boolean): CellResult => ({
    cellId: ctx.cellId,
    language: ctx.language,
    type,
    output: text,
    executed: true,
    outputs,
    droppedBytes: output.droppedBytes,
    timedOut: exec.limit === 'timeout',
    limit: exec.limit ?? null,
    ...(exec.cpuMs === undefined ? {} : { cpuMs: Math.round(exec.cpuMs * 1000) / 1000 }),
    contextLost,
    startedAt: ctx.startedAt,
    durationMs: Math.round(exec.durationMs * 1000) / 1000,
  });
  switch (outcome.status) {
    case 'ok': {
      if (outcome.value === null) return result('output', finalText(output, ''), ctx.contextLost);
      // A rich bundle is kept whole when it fits what is left of the budget, else text only.
      const rich = outcome.data && { ...outcome.data, 'text/plain': outcome.value };
      const richSize = rich ? Buffer.byteLength(JSON.stringify(rich)) : 0;
      const keepRich = rich !== undefined && output.fits(richSize);
      const value = output.fit(outcome.value);
      outputs.push({
        output_type: 'execute_result',
        data: keepRich ? { ...rich, 'text/plain': value } : { 'text/plain': value },
        metadata: keepRich ? (outcome.metadata ?? {}) : {},
      });
      return result('output', finalText(output, value), ctx.contextLost);
    }
    case 'error': {
      const full = joinLines(outcome.traceback) || `${outcome.ename}: ${outcome.evalue}\n`;
      const traceback = output.fit(full);
      let text = finalText(output, traceback);
      if (exec.limit)
        text += `[runcell] ${limitText(exec.limit, ctx)} and was interrupted; the context was kept\n`;
      outputs.push({
        output_type: 'error',
        ename: truncateUtf8(outcome.ename, 256),
        evalue: truncateUtf8(outcome.evalue, Buffer.byteLength(traceback)),
        traceback: traceback === full ? outcome.traceback : [traceback],
      });
      return result('error', text, ctx.contextLost);
    }
    case 'dead': {
      const why = exec.limit
        ? `${limitText(exec.limit, ctx)} and did not stop when interrupted, so its kernel was killed`
        : outcome.why;
      outputs.push({ output_type: 'error', ename: 'KernelDied', evalue: why, traceback: [] });
      return result(
        'critical',
        withLine(finalText(output, ''), `[runcell] ${why}; the notebook's context was reset\n`),
        true,
      );
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
    limit: null,
    contextLost: true,
    startedAt: new Date().toISOString(),
    durationMs: 0,
  };
}
