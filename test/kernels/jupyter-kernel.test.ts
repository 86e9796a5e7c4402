/**
 * A Jupyter kernel (Debian's ipykernel) as a runcell kernel: the bridge and the kernel in one
 * real bubblewrap sandbox, driven through the real Kernel with the default limits.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JupyterDriver } from '../../src/kernels/jupyter/jupyter-driver.ts';
import { discoverKernelspecs, type Kernelspec } from '../../src/kernels/jupyter/kernelspecs.ts';
import { Kernel, type ExecOptions } from '../../src/kernels/kernel.ts';
import { BwrapSandbox } from '../../src/sandbox/bwrap-sandbox.ts';
import { silentLog, tempDir } from '../helpers.ts';

const sandbox = new BwrapSandbox({
  uidBase: 62300,
  uidCount: 4,
  instance: `test-jupyter-${process.pid}`,
  log: silentLog,
});
const root = tempDir();
const kernelspecs = discoverKernelspecs().kernelspecs;
const python3 = kernelspecs.find((s) => s.name === 'python3');

const LIMITS = {
  memoryBytes: 512 << 20,
  maxProcesses: 64,
  tmpBytes: 64 << 20,
  cpus: 1,
  openFiles: 1024,
  fileBytes: 1024 << 20,
};
const EXEC: ExecOptions = {
  timeoutMs: 30_000,
  cpuTimeMs: 0,
  cpuCores: 1,
  graceMs: 5_000,
  maxOutputBytes: 1 << 20,
};

let counter = 0;
async function start(spec: Kernelspec = python3!): Promise<Kernel> {
  const notebookId = `jupyter-${++counter}`;
  const workspace = join(root, notebookId);
  return Kernel.start(sandbox, new JupyterDriver(process.execPath, spec), {
    notebookId,
    workspace,
    limits: LIMITS,
    network: false,
    log: silentLog,
    startTimeoutMs: 30_000,
  });
}

beforeAll(() => sandbox.init());
afterAll(() => sandbox.close());

describe('discoverKernelspecs', () => {
  it("finds Debian's ipykernel", () => {
    expect(python3).toMatchObject({
      name: 'python3',
      language: 'python',
      interruptMode: 'signal',
      resourceDir: '/usr/share/jupyter/kernels/python3',
    });
    expect(python3!.argv).toContain('{connection_file}');
  });

  it('skips invalid specs with a reason, and the extra directory comes first', () => {
    const dir = tempDir();
    const write = (name: string, spec: unknown) => {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'kernel.json'), JSON.stringify(spec));
    };
    const valid = { argv: ['python3', '-f', '{connection_file}'], display_name: 'P', language: 'python' };
    write('python3', { ...valid, display_name: 'Mine' });
    write('no-file', { ...valid, argv: ['python3'] });
    write('outside', { ...valid, argv: ['/opt/conda/bin/python', '{connection_file}'] });
    write('bad-mode', { ...valid, interrupt_mode: 'telepathy' });
    write('bad-env', { ...valid, env: { A: 1 } });
    mkdirSync(join(dir, 'no-json'));
    const { kernelspecs, skipped } = discoverKernelspecs(dir);
    expect(kernelspecs.find((s) => s.name === 'python3')?.displayName).toBe('Mine');
    const reasons = Object.fromEntries(skipped.map((s) => [s.path.split('/').at(-2), s.reason]));
    expect(reasons['no-file']).toMatch(/connection_file/);
    expect(reasons.outside).toMatch(/outside \/usr/);
    expect(reasons['bad-mode']).toMatch(/interrupt_mode/);
    expect(reasons['bad-env']).toMatch(/env/);
    expect(reasons['no-json']).toMatch(/unreadable/);
    expect(reasons.python3).toMatch(/shadowed by/);
  });
});

describe.runIf(python3)('Jupyter kernel (ipykernel) in the sandbox', () => {
  let kernel: Kernel;
  beforeAll(async () => {
    const started = performance.now();
    kernel = await start();
    const cold = performance.now() - started;
    await kernel.execute('1+1', EXEC);
    const warm = performance.now();
    const round = await kernel.execute('1+1', EXEC);
    console.log(
      `jupyter:python3 cold start ${cold.toFixed(0)} ms, warm 1+1 ${(performance.now() - warm).toFixed(1)} ms`,
    );
    expect(round.outcome).toMatchObject({ status: 'ok', value: '2' });
  }, 60_000);
  afterAll(() => kernel?.kill());

  it('keeps state and reports the value', async () => {
    expect((await kernel.execute('x = 1', EXEC)).outcome).toEqual({
      status: 'ok',
      value: null,
      data: undefined,
      metadata: undefined,
    });
    expect((await kernel.execute('x + 1', EXEC)).outcome).toMatchObject({ status: 'ok', value: '2' });
  });

  it('streams stdout and stderr', async () => {
    const run = await kernel.execute(
      "import sys\nprint('out')\nsys.stdout.flush()\nprint('err', file=sys.stderr)",
      EXEC,
    );
    expect(run.outcome).toMatchObject({ status: 'ok', value: null });
    expect(run.output.outputs).toEqual([
      { output_type: 'stream', name: 'stdout', text: 'out\n' },
      { output_type: 'stream', name: 'stderr', text: 'err\n' },
    ]);
  });

  it('shows what subprocesses print once (through iopub only)', async () => {
    const run = await kernel.execute("import os, time\nos.system('echo sub')\ntime.sleep(0.5)", EXEC);
    expect(run.output.text).toBe('sub\n');
  });

  it('reports an error with a plain-text traceback', async () => {
    const run = await kernel.execute('def f():\n    return 1/0\nf()', EXEC);
    expect(run.outcome).toMatchObject({
      status: 'error',
      ename: 'ZeroDivisionError',
      evalue: 'division by zero',
      interrupted: false,
    });
    const traceback = run.outcome.status === 'error' ? run.outcome.traceback.join('\n') : '';
    expect(traceback).toContain('return 1/0');
    expect(traceback).toContain('ZeroDivisionError: division by zero');
    expect(traceback).not.toContain('\x1b[');
  });

  it('forwards displays and rich values as mime bundles', async () => {
    const run = await kernel.execute(
      "from IPython.display import HTML, display\ndisplay(HTML('<b>x</b>'))\nHTML('<i>y</i>')",
      EXEC,
    );
    expect(run.output.outputs).toEqual([
      {
        output_type: 'display_data',
        data: { 'text/html': '<b>x</b>', 'text/plain': '<IPython.core.display.HTML object>' },
        metadata: {},
      },
    ]);
    expect(run.outcome).toMatchObject({
      status: 'ok',
      value: '<IPython.core.display.HTML object>',
      data: { 'text/html': '<i>y</i>' },
    });
  });

  it('interrupts a running cell and keeps the context', async () => {
    const running = kernel.execute('import time\ntime.sleep(100)', EXEC);
    await new Promise((r) => setTimeout(r, 500));
    kernel.interrupt();
    const run = await running;
    expect(run.outcome).toMatchObject({ status: 'error', ename: 'KeyboardInterrupt', interrupted: true });
    expect(run.durationMs).toBeLessThan(10_000);
    expect((await kernel.execute('x', EXEC)).outcome).toMatchObject({ status: 'ok', value: '1' });
  });

  it('interrupts a cell the kernel has not started yet, every time', async () => {
    // ipykernel ignores SIGINT until it runs the cell: the bridge signals when it starts. A
    // signal that lands in ipykernel's own code there cuts its handler short (idle, no reply):
    // that too must end the cell, and the kernel go on. Repeated, as that race is rare.
    for (let i = 0; i < 12; i++) {
      const running = kernel.execute('import time\ntime.sleep(100)', EXEC);
      kernel.interrupt();
      expect((await running).outcome).toMatchObject({ status: 'error', interrupted: true });
      expect((await kernel.execute('x', EXEC)).outcome).toMatchObject({ status: 'ok', value: '1' });
    }
  }, 60_000);

  it('stops a cell at its wall clock', async () => {
    const run = await kernel.execute('while True: pass', { ...EXEC, timeoutMs: 300 });
    expect(run.limit).toBe('timeout');
    expect(run.outcome).toMatchObject({ status: 'error', interrupted: true });
    expect((await kernel.execute('x', EXEC)).outcome).toMatchObject({ status: 'ok', value: '1' });
  });

  it('answers input() through onInput, and EOFError without an answer', async () => {
    const prompts: string[] = [];
    const run = await kernel.execute("name = input('who? ')\nname.upper()", {
      ...EXEC,
      onInput: async (prompt, password) => {
        prompts.push(`${prompt}|${password}`);
        return 'ada';
      },
    });
    expect(prompts).toEqual(['who? |false']);
    expect(run.outcome).toMatchObject({ status: 'ok', value: "'ADA'" });
    const none = await kernel.execute('input()', EXEC);
    expect(none.outcome).toMatchObject({ status: 'error', ename: 'EOFError' });
    expect(none.output.text).toContain('input() needs an interactive client');
  });

  it('interrupts a cell waiting for input', async () => {
    let asked!: () => void;
    const waiting = new Promise<void>((resolve) => (asked = resolve));
    const running = kernel.execute('input()', {
      ...EXEC,
      onInput: () => {
        asked();
        return new Promise(() => {}); // nobody answers
      },
    });
    await waiting;
    kernel.interrupt();
    expect((await running).outcome).toMatchObject({
      status: 'error',
      ename: 'KeyboardInterrupt',
      interrupted: true,
    });
    expect((await kernel.execute('x', EXEC)).outcome).toMatchObject({ status: 'ok', value: '1' });
  });

  it('drops output past maxOutputBytes and counts it', async () => {
    const run = await kernel.execute("print('x' * 100_000)", { ...EXEC, maxOutputBytes: 1000 });
    expect(run.outcome.status).toBe('ok');
    expect(run.output.text).toBe('x'.repeat(1000));
    expect(run.output.droppedBytes).toBe(100_001 - 1000);
  });

  it('gives the kernel no way to the protocol channel or the host', async () => {
    // fds 3 and 4 are /dev/null in the kernel: a frame written there reaches nobody.
    const run = await kernel.execute(
      "import os, socket\nos.write(4, b'\\xff\\xff\\xff\\xff')\n" +
        "[os.readlink(f'/proc/self/fd/{n}') for n in (3, 4)], os.path.exists('/work/main/src'), os.getuid()",
      EXEC,
    );
    expect(run.outcome).toMatchObject({ status: 'ok', value: "(['/dev/null', '/dev/null'], False, 1000)" });
    expect(kernel.state).toBe('idle');
  });

  it('leaves most of the process and memory limits to the cell', async () => {
    // Threads and resident memory of every process in the sandbox (bwrap, bridge, ipykernel).
    const run = await kernel.execute(
      'import os\nprocs = [p for p in os.listdir("/proc") if p.isdigit()]\n' +
        'rss = lambda p: int(open(f"/proc/{p}/status").read().split("VmRSS:")[1].split()[0])\n' +
        '[sum(len(os.listdir(f"/proc/{p}/task")) for p in procs), sum(rss(p) for p in procs) >> 10]',
      EXEC,
    );
    const [threads, rssMb] = JSON.parse(run.outcome.status === 'ok' ? (run.outcome.value ?? '') : '');
    console.log(`jupyter:python3 in the sandbox: ${threads} threads, ${rssMb} MiB resident`);
    expect(threads).toBeLessThan(LIMITS.maxProcesses / 2);
    expect(rssMb).toBeLessThan(LIMITS.memoryBytes / 1048576 / 2);
    // The IPython profile went to /tmp, not into the notebook's files.
    const listing = await kernel.execute('import os\nos.listdir(".")', EXEC);
    expect(listing.outcome).toMatchObject({ status: 'ok', value: '[]' });
  });

  it('ends with the kernel: a dead ipykernel takes the bridge with it', async () => {
    const own = await start();
    const run = await own.execute('import os\nos._exit(3)', EXEC);
    expect(run.outcome).toMatchObject({ status: 'dead', why: 'the kernel exited with code 3' });
    expect(run.output.text).toContain('the kernel exited (code 3)');
    expect(own.state).toBe('dead');
  });
});

describe.runIf(python3)('Jupyter kernelspecs outside /usr', () => {
  /** A copy of the python3 spec in a directory of its own (bound into the sandbox). */
  function specIn(overrides: Record<string, unknown>): Kernelspec {
    const dir = tempDir();
    mkdirSync(join(dir, 'custom'));
    const kernelJson = { argv: python3!.argv, display_name: 'Custom', language: 'python', ...overrides };
    writeFileSync(join(dir, 'custom', 'kernel.json'), JSON.stringify(kernelJson));
    return discoverKernelspecs(dir).kernelspecs.find((s) => s.name === 'custom')!;
  }

  it('interrupts with interrupt_request when the spec asks for messages', async () => {
    const spec = specIn({ interrupt_mode: 'message', env: { RUNCELL_TEST: 'from-spec' } });
    expect(spec.interruptMode).toBe('message');
    const kernel = await start(spec);
    try {
      const env = await kernel.execute("import os\nos.environ['RUNCELL_TEST']", EXEC);
      expect(env.outcome).toMatchObject({ status: 'ok', value: "'from-spec'" });
      const running = kernel.execute('import time\ntime.sleep(100)', EXEC);
      await new Promise((r) => setTimeout(r, 500));
      kernel.interrupt();
      expect((await running).outcome).toMatchObject({ status: 'error', interrupted: true });
    } finally {
      await kernel.kill();
    }
  }, 30_000);

  it('reports a kernel that cannot start', async () => {
    const spec = specIn({
      argv: ['/usr/bin/python3', '-c', 'import sys; sys.exit("no such kernel")', '{connection_file}'],
    });
    await expect(start(spec)).rejects.toThrow(/kernel failed to start.*code 1.*no such kernel/s);
  });
});
