/**
 * Rich outputs through real sandboxed kernels: matplotlib figures as image/png displays (as
 * IPython's inline backend), DataFrames as HTML, JavaScript's display(), the output limit on mime
 * bundles, and the text a Pennant client sees for them.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { toCellResult } from '../../src/engine/cell-result.ts';
import { JavascriptDriver } from '../../src/kernels/javascript/javascript-driver.ts';
import type { KernelDriver } from '../../src/kernels/kernel-driver.ts';
import { Kernel, type ExecResult } from '../../src/kernels/kernel.ts';
import { PythonDriver } from '../../src/kernels/python/python-driver.ts';
import { TypescriptDriver } from '../../src/kernels/typescript/typescript-driver.ts';
import { BwrapSandbox } from '../../src/sandbox/bwrap-sandbox.ts';
import type { JupyterOutput } from '../../src/store/store.ts';
import { silentLog, tempDir } from '../helpers.ts';

const sandbox = new BwrapSandbox({
  uidBase: 62400,
  uidCount: 4,
  instance: `test-rich-${process.pid}`,
  log: silentLog,
});
const root = tempDir();
const PNG_SIGNATURE = 'iVBORw0KGgo'; // base64 of \x89PNG\r\n\x1a\n
const FIGURE = '<Figure size 640x480 with 1 Axes>';
const kernels: Kernel[] = [];
let notebooks = 0;

async function start(driver: KernelDriver): Promise<{ kernel: Kernel; workspace: string }> {
  const workspace = join(root, `nb${++notebooks}`);
  mkdirSync(workspace, { mode: 0o700 });
  const kernel = await Kernel.start(sandbox, driver, {
    notebookId: `rich-${notebooks}`,
    workspace,
    limits: {
      memoryBytes: 1 << 30,
      maxProcesses: 64,
      tmpBytes: 64 << 20,
      cpus: 1,
      openFiles: 256,
      fileBytes: 64 << 20,
    },
    network: false,
    log: silentLog,
    startTimeoutMs: 30_000,
  });
  kernels.push(kernel);
  return { kernel, workspace };
}

function run(kernel: Kernel, code: string, maxOutputBytes = 1 << 20): Promise<ExecResult> {
  return kernel.execute(code, {
    timeoutMs: 60_000,
    cpuTimeMs: 0,
    cpuCores: 1,
    graceMs: 2000,
    maxOutputBytes,
  });
}

const pennantText = (exec: ExecResult) =>
  toCellResult(exec, {
    cellId: 'c',
    language: 'python',
    startedAt: new Date().toISOString(),
    timeoutSeconds: 60,
    cpuSeconds: 60,
    contextLost: false,
  }).output;

type Display = Extract<JupyterOutput, { output_type: 'display_data' }>;
const displays = (exec: ExecResult) =>
  exec.output.outputs.filter((o): o is Display => o.output_type === 'display_data');
/** The outputs in order, each as a short tag: `stdout:a\n`, `display_data:image/png,text/plain`. */
const shape = (exec: ExecResult) =>
  exec.output.outputs.map((o) =>
    o.output_type === 'stream'
      ? `${o.name}:${o.text}`
      : `${o.output_type}:${'data' in o ? Object.keys(o.data).join(',') : ''}`,
  );
const okValue = (exec: ExecResult) => {
  expect(exec.outcome, JSON.stringify(exec.outcome)).toMatchObject({ status: 'ok' });
  return (exec.outcome as { value: string | null }).value;
};

beforeAll(() => sandbox.init());
// Each test's notebook holds one of the few uids until its kernel is gone.
afterEach(async () => {
  await Promise.all(kernels.splice(0).map(async (k) => (await k.kill('test over'), await k.exited)));
});
afterAll(() => sandbox.close());

describe('Python rich outputs', () => {
  const python = new PythonDriver('/usr/bin/python3');

  it('shows every open figure after the cell as image/png, then closes it', async () => {
    const { kernel, workspace } = await start(python);
    // Nothing heavy is imported before a cell asks for it.
    expect(
      okValue(
        await run(
          kernel,
          "import sys\nsorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'numpy', 'pandas'})",
        ),
      ),
    ).toBe('[]');

    const started = performance.now();
    const first = await run(kernel, 'import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])');
    const firstFigureMs = performance.now() - started;
    console.log(
      `first figure (import, font cache, render) in a fresh kernel: ${Math.round(firstFigureMs)} ms`,
    );
    expect(okValue(first)).toMatch(/^\[<matplotlib\.lines\.Line2D object at 0x[0-9a-f]+>\]$/);
    const [figure, ...more] = displays(first);
    expect(more).toEqual([]);
    expect(figure!.data['text/plain']).toBe(FIGURE);
    const png = Buffer.from(figure!.data['image/png'] as string, 'base64');
    expect((figure!.data['image/png'] as string).startsWith(PNG_SIGNATURE)).toBe(true);
    expect(png.readUInt32BE(16)).toBeGreaterThan(300); // width from the IHDR chunk
    expect(pennantText(first)).toMatch(new RegExp(`^${FIGURE}\\n\\[<matplotlib`));

    // Closed: the next cell shows nothing again; a new figure renders without the first's cost.
    expect(displays(await run(kernel, 'plt.gcf'))).toEqual([]);
    const again = performance.now();
    const second = await run(kernel, 'fig, axes = plt.subplots(1, 2)\naxes[0].bar([1, 2], [3, 4]);');
    const secondFigureMs = performance.now() - again;
    console.log(`a later figure: ${Math.round(secondFigureMs)} ms`);
    expect(displays(second).map((d) => d.data['text/plain'])).toEqual(['<Figure size 640x480 with 2 Axes>']);
    expect(secondFigureMs).toBeLessThan(firstFigureMs);
    // matplotlib's config and font cache went to the kernel's /tmp, not into the workspace.
    expect(existsSync(join(workspace, '.cache'))).toBe(false);
    expect(existsSync(join(workspace, '.config'))).toBe(false);
  });

  it('shows figures at plt.show(), in order with the output, even in the cell that imports pyplot', async () => {
    const { kernel } = await start(python);
    const exec = await run(
      kernel,
      [
        'import matplotlib.pyplot as plt',
        "print('before')",
        'plt.plot([1, 2])',
        'plt.show()',
        "print('between')",
        'plt.figure(); plt.plot([2, 1]); plt.figure(); plt.plot([3, 3])',
        'plt.show()',
        "print('after')",
      ].join('\n'),
    );
    expect(okValue(exec)).toBeNull();
    expect(shape(exec)).toEqual([
      'stdout:before\n',
      'display_data:image/png,text/plain',
      'stdout:between\n',
      'display_data:image/png,text/plain',
      'display_data:image/png,text/plain',
      'stdout:after\n',
    ]);
    expect(pennantText(exec)).toBe(`before\n${FIGURE}\nbetween\n${FIGURE}\n${FIGURE}\nafter\n`);
  });

  it('shows the figures of a cell that fails, before its error', async () => {
    const { kernel } = await start(python);
    const exec = await run(kernel, 'import matplotlib.pyplot as plt\nplt.plot([1, 2])\n1 / 0');
    expect(exec.outcome).toMatchObject({ status: 'error', ename: 'ZeroDivisionError' });
    expect(shape(exec)).toEqual(['display_data:image/png,text/plain']);
    expect(pennantText(exec)).toMatch(new RegExp(`^${FIGURE}\\nTraceback`));
  });

  it('replaces an image that does not fit the output limit with a line that says so', async () => {
    const { kernel } = await start(python);
    const limit = 8000;
    const exec = await run(
      kernel,
      "import matplotlib.pyplot as plt\nprint('x' * 100)\nplt.plot([1, 2])\nplt.show()\nprint('done')",
      limit,
    );
    expect(okValue(exec)).toBeNull();
    expect(displays(exec)).toEqual([]);
    const text = pennantText(exec);
    expect(text).toMatch(
      new RegExp(
        `^x{100}\\n\\[image/png output not shown: \\d+ bytes, more than the ${limit - 101} bytes left of the cell's output limit of ${limit} bytes\\]\\ndone\\n`,
      ),
    );
    expect(text).not.toContain(PNG_SIGNATURE);
    expect(exec.output.droppedBytes).toBeGreaterThan(limit);
  });

  it('drops the figures of an interrupted cell without rendering them', async () => {
    const { kernel } = await start(python);
    const exec = await kernel.execute(
      'import matplotlib.pyplot as plt, time\nplt.plot([1, 2])\ntime.sleep(30)',
      { timeoutMs: 1500, cpuTimeMs: 0, cpuCores: 1, graceMs: 5000, maxOutputBytes: 1 << 20 },
    );
    expect(exec.limit).toBe('timeout');
    expect(exec.outcome).toMatchObject({ status: 'error', interrupted: true });
    expect(displays(exec)).toEqual([]);
    expect(okValue(await run(kernel, 'len(plt.get_fignums())'))).toBe('0');
  });

  it('gives a DataFrame as trailing expression text/html and text/plain', async () => {
    const { kernel } = await start(python);
    const exec = await run(kernel, "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})");
    const value = okValue(exec);
    expect(value).toBe('   a  b\n0  1  x\n1  2  y');
    expect(exec.output.outputs).toEqual([]); // the execute_result is toCellResult's
    expect(exec.outcome).toMatchObject({ data: { 'text/html': expect.stringContaining('<table') } });
    const cell = toCellResult(exec, {
      cellId: 'c',
      language: 'python',
      startedAt: '',
      timeoutSeconds: 60,
      cpuSeconds: 60,
      contextLost: false,
    });
    expect(cell.output).toBe(value);
    expect(cell.outputs.at(-1)).toMatchObject({
      output_type: 'execute_result',
      data: { 'text/plain': value, 'text/html': expect.stringContaining('<td>x</td>') },
    });
  });

  it('counts a display() of a DataFrame against the output limit', async () => {
    const { kernel } = await start(python);
    const exec = await run(kernel, "import pandas as pd\ndisplay(pd.DataFrame({'a': range(1000)}))", 1024);
    expect(displays(exec)).toEqual([]);
    expect(pennantText(exec)).toMatch(
      /^\[text\/html output not shown: \d+ bytes, more than the 1024 bytes left/,
    );
  });
});

describe('JavaScript display()', () => {
  const javascript = new JavascriptDriver(process.execPath);

  it('shows a value as the REPL prints it, in order with the output', async () => {
    const { kernel } = await start(javascript);
    const exec = await run(
      kernel,
      "console.log('a'); display({ n: 1, s: 'x', list: [1, 2], when: new Map([[1, 2]]) }); display('str', 42); console.log('b')",
    );
    expect(okValue(exec)).toBeNull();
    expect(shape(exec)).toEqual([
      'stdout:a\n',
      'display_data:text/plain',
      'display_data:text/plain',
      'display_data:text/plain',
      'stdout:b\n',
    ]);
    expect(displays(exec).map((d) => d.data['text/plain'])).toEqual([
      "{ n: 1, s: 'x', list: [ 1, 2 ], when: Map(1) { 1 => 2 } }",
      "'str'",
      '42',
    ]);
  });

  it('sends a MIME bundle as it is, binary data as base64', async () => {
    const { kernel } = await start(javascript);
    const exec = await run(
      kernel,
      [
        "display({ 'text/html': '<b>hi</b>', 'text/plain': 'hi' })",
        "display({ 'image/png': new Uint8Array([0x89, 0x50, 0x4e, 0x47]) })",
        "display({ 'application/json': { a: [1, 2] } })",
      ].join('\n'),
    );
    expect(displays(exec).map((d) => d.data)).toEqual([
      { 'text/html': '<b>hi</b>', 'text/plain': 'hi' },
      { 'image/png': 'iVBORw==' },
      { 'application/json': { a: [1, 2] } },
    ]);
    expect(pennantText(exec)).toBe('hi\n[image/png]\n[application/json]\n');
    const bad = await run(kernel, "display({ 'image/png': 12 })");
    expect(bad.outcome).toMatchObject({
      status: 'error',
      ename: 'TypeError',
      evalue: 'display(): the image/png data must be a string or a Uint8Array',
    });
  });

  it('replaces a bundle that does not fit the output limit with a line that says so', async () => {
    const { kernel } = await start(javascript);
    const exec = await run(kernel, "display({ 'image/png': new Uint8Array(10000) }); 1", 2000);
    expect(displays(exec)).toEqual([]);
    expect(pennantText(exec)).toMatch(
      /^\[image\/png output not shown: \d+ bytes, more than the 2000 bytes left of the cell's output limit of 2000 bytes\]\n1\n/,
    );
  });

  it('is there in TypeScript cells too', async () => {
    const { kernel } = await start(new TypescriptDriver(process.execPath));
    const exec = await run(
      kernel,
      "const p: { x: number } = { x: 1 };\ndisplay(p, { 'text/markdown': '# t' })",
    );
    expect(displays(exec).map((d) => d.data)).toEqual([
      { 'text/plain': '{ x: 1 }' },
      { 'text/markdown': '# t' },
    ]);
  });
});
