/**
 * The same table of behaviours for every stateful language, through the real API and real
 * sandboxed kernels: define, re-define, use across cells, an error with its traceback, interrupt
 * and timeout keeping the context, the output limit, and rich output where the language has it.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalStatus, notebookId, run, startApp, submit } from '../helpers.ts';

interface LanguageCase {
  language: string;
  /** Defines x as 1, then re-defines it as 2 (a re-declaration where the language has one). */
  define: string;
  redefine: string;
  /** An expression or statement whose output is `expected` when x is 2. */
  use: string;
  expected: string;
  /** Raises an error from inside a function named `explode`. */
  error: string;
  errorText: RegExp;
  /** Runs until stopped. */
  forever: string;
  /** Prints about 200 KB. */
  flood: string;
  /** Shows an HTML display. */
  rich?: string;
}

const CASES: LanguageCase[] = [
  {
    language: 'python',
    define: 'x = 1',
    redefine: 'x = 2',
    use: 'x + 1',
    expected: '3',
    error: 'def explode():\n    raise ValueError("boom")\nexplode()',
    errorText: /explode[\s\S]*ValueError: boom/,
    forever: 'while True: pass',
    flood: "print('y' * 200000)",
    rich: "from IPython.display import HTML\ndisplay(HTML('<b>rich</b>'))",
  },
  {
    language: 'javascript',
    define: 'let x = 1',
    redefine: 'let x = 2',
    use: 'x + 1',
    expected: '3',
    error: 'function explode() { throw new Error("boom") }\nexplode()',
    errorText: /Error: boom[\s\S]*explode/,
    forever: 'while (true) {}',
    flood: "console.log('y'.repeat(200000))",
    rich: "display({ 'text/html': '<b>rich</b>' })",
  },
  {
    language: 'typescript',
    define: 'let x: number = 1',
    redefine: 'let x: number = 2',
    use: 'x + 1',
    expected: '3',
    error: 'function explode(): never { throw new Error("boom") }\nexplode()',
    errorText: /Error: boom[\s\S]*explode/,
    forever: 'while (true) {}',
    flood: "console.log('y'.repeat(200000))",
    rich: "display({ 'text/html': '<b>rich</b>' })",
  },
  {
    language: 'java',
    define: 'int x = 1;',
    redefine: 'int x = 2;',
    use: 'x + 1',
    expected: '3',
    error: 'void explode() { throw new IllegalStateException("boom"); }\nexplode();',
    errorText: /IllegalStateException: boom[\s\S]*explode/,
    forever: 'while (true) {}',
    flood: 'System.out.println("y".repeat(200000));',
  },
  {
    language: 'bash',
    define: 'x=1',
    redefine: 'x=2',
    use: 'echo $((x + 1))',
    expected: '3',
    error: 'explode() { echo "boom" >&2; return 3; }\nexplode',
    errorText: /boom[\s\S]*exit status 3/,
    forever: 'while :; do :; done',
    flood: "head -c 200000 /dev/zero | tr '\\0' y; echo",
  },
  {
    language: 'jupyter:python3',
    define: 'x = 1',
    redefine: 'x = 2',
    use: 'x + 1',
    expected: '3',
    error: 'def explode():\n    raise ValueError("boom")\nexplode()',
    errorText: /explode[\s\S]*ValueError: boom/,
    forever: 'while True: pass',
    flood: "print('y' * 200000)",
    rich: "from IPython.display import HTML\ndisplay(HTML('<b>rich</b>'))",
  },
];

let app: FastifyInstance;
let offered: Set<string>;
beforeAll(async () => {
  // Java and Jupyter kernels start in about a second; the limit keeps the flood small.
  app = await startApp({ maxOutputBytes: 50_000, sandboxUidBase: 62700 });
  offered = new Set(
    ((await app.inject('/api/v1/runtimes')).json() as { language: string }[]).map((r) => r.language),
  );
}, 60_000);
afterAll(() => app.close());

describe.each(CASES)('$language', (c) => {
  const cells = (code: string[]) => code.map((source) => ({ code: source, language: c.language }));

  it('is offered by this machine', () => {
    expect([...offered]).toContain(c.language);
  });

  it('keeps definitions across cells, re-defines, and reports errors with a traceback', async () => {
    const nb = notebookId(c.language.replace(':', '-'));
    expect((await run(app, nb, cells([c.define]))).status).toBe('success');
    const status = await run(app, nb, cells([c.redefine, c.use, c.error]), { stopOnError: false });
    const [redefined, used, failed] = status.results;
    expect(redefined!.type).toBe('output');
    expect(used!.output.trim()).toBe(c.expected);
    expect(failed!.type).toBe('error');
    expect(failed!.output).toMatch(c.errorText);
  }, 60_000);

  it('stops a runaway cell on interrupt, skips the rest, and keeps the context', async () => {
    const nb = notebookId(c.language.replace(':', '-'));
    await run(app, nb, cells([c.define]));
    const id = await submit(app, {
      notebookId: nb,
      cells: cells([c.forever, c.use]).map((cell, i) => ({ cellId: `c${i}`, ...cell })),
    });
    let interrupted = false;
    for (let i = 0; i < 300 && !interrupted; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const res = await app.inject({ method: 'POST', url: `/api/v1/notebooks/${nb}/interrupt` });
      interrupted = res.json().interrupted;
    }
    expect(interrupted).toBe(true);
    const status = await finalStatus(app, id);
    expect(status.results).toHaveLength(1);
    expect(status.results[0]).toMatchObject({ type: 'error', timedOut: false, contextLost: false });
    const after = await run(app, nb, cells([c.redefine, c.use]));
    expect(after.results[1]!.output.trim()).toBe(c.expected);
  }, 60_000);

  it('times a runaway cell out and keeps the context', async () => {
    const nb = notebookId(c.language.replace(':', '-'));
    await run(app, nb, cells([c.define]));
    const status = await run(app, nb, cells([c.forever]), { timeout: 1 });
    expect(status.results[0]).toMatchObject({ type: 'error', timedOut: true });
    const after = await run(app, nb, cells([c.redefine, c.use]));
    expect(after.results[1]).toMatchObject({ contextLost: false });
    expect(after.results[1]!.output.trim()).toBe(c.expected);
  }, 60_000);

  it('drops output beyond the limit with a visible marker', async () => {
    const status = await run(app, notebookId(c.language.replace(':', '-')), cells([c.flood]));
    const [result] = status.results;
    expect(result!.droppedBytes).toBeGreaterThan(100_000);
    expect(result!.output.length).toBeLessThan(60_000);
    expect(result!.output).toMatch(/dropped|truncated|limit/i);
  }, 60_000);

  it.runIf(c.rich !== undefined)(
    'shows rich output as a display_data mime bundle',
    async () => {
      const status = await run(app, notebookId(c.language.replace(':', '-')), cells([c.rich!]));
      const display = status.results[0]!.outputs.find((o) => o.output_type === 'display_data') as
        { data: Record<string, unknown> } | undefined;
      expect(display?.data['text/html']).toBe('<b>rich</b>');
    },
    60_000,
  );
});
