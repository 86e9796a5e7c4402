import { describe, it, expect, afterEach } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { PythonDriver } from '../../src/kernels/python/python-driver.ts';
import {
  encodeFrame,
  FrameDecoder,
  type KernelEvent,
  type KernelRequest,
} from '../../src/kernels/protocol.ts';

const PYTHON = '/usr/bin/python3';
// The kernel's real start: the driver's code object on stdin (no sandbox here: the driver alone).
const driver = new PythonDriver(PYTHON);
await driver.prepare();
const ARGV = driver.argv({ memoryBytes: 1 << 30 });

type ResultEvent = Extract<KernelEvent, { type: 'result' }>;
type ErrorResult = Extract<ResultEvent, { status: 'error' }>;
type OkResult = Extract<ResultEvent, { status: 'ok' }>;
type StreamEvent = Extract<KernelEvent, { type: 'stream' }>;

interface CellRun {
  id: number;
  result: ResultEvent;
  streams: StreamEvent[];
  stdout: string;
  stderr: string;
  /** stdout and stderr in the order the frames arrived. */
  output: string;
  /** Consecutive frames of the same stream merged: [name, text] pairs in order. */
  runs: [string, string][];
}

class Kernel {
  readonly proc: ChildProcess;
  readonly events: KernelEvent[] = [];
  readonly diagnostics: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly dir: string;
  /** Events that broke the protocol's ordering rules (e.g. output for a cell after its result). */
  readonly violations: string[] = [];
  #decoder = new FrameDecoder();
  #listeners = new Set<() => void>();
  #finished = new Set<number>();
  #nextId = 1;

  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'runcell-py-driver-'));
    this.proc = spawn(ARGV[0]!, ARGV.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'],
      env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
      cwd: this.dir,
    });
    this.proc.stdin!.end(driver.stdin());
    this.proc.stdout!.on('data', (chunk: Buffer) => this.diagnostics.push(chunk.toString()));
    this.proc.stderr!.on('data', (chunk: Buffer) => this.diagnostics.push(chunk.toString()));
    (this.proc.stdio[4] as Readable).on('data', (chunk: Buffer) => {
      for (const message of this.#decoder.push(chunk)) {
        const event = message as KernelEvent;
        if (event.type === 'stream' || event.type === 'result') {
          if (this.#finished.has(event.id)) this.violations.push(`after result: ${JSON.stringify(event)}`);
          if (event.type === 'result') this.#finished.add(event.id);
        }
        this.events.push(event);
      }
      for (const listener of this.#listeners) listener();
    });
    // The server may be gone when the kernel writes: ignore EPIPE on our end of fd 3.
    (this.proc.stdio[3] as Writable).on('error', () => {});
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  static async start(): Promise<Kernel> {
    const kernel = new Kernel();
    kernels.push(kernel);
    await kernel.waitFor((e): e is Extract<KernelEvent, { type: 'ready' }> => e.type === 'ready');
    return kernel;
  }

  send(request: KernelRequest): void {
    (this.proc.stdio[3] as Writable).write(encodeFrame(request));
  }

  /** Resolves with the first event matching `match`. */
  waitFor<T extends KernelEvent>(match: (event: KernelEvent) => event is T, timeoutMs = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.events.find(match);
        if (found === undefined) return false;
        cleanup();
        resolve(found);
        return true;
      };
      const onEvent = () => void check();
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `timed out; events: ${JSON.stringify(this.events).slice(-2000)}; fd 1/2: ${this.diagnostics.join('')}`,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#listeners.delete(onEvent);
      };
      this.#listeners.add(onEvent);
      check();
    });
  }

  /** Sends an execute request; returns its id and a promise of the whole run. */
  start(code: string, maxOutputBytes = 1 << 20, timeoutMs = 10_000): { id: number; done: Promise<CellRun> } {
    const id = this.#nextId++;
    this.send({ type: 'execute', id, code, maxOutputBytes });
    const done = this.waitFor((e): e is ResultEvent => e.type === 'result' && e.id === id, timeoutMs).then(
      (result) => {
        const streams = this.events.filter((e): e is StreamEvent => e.type === 'stream' && e.id === id);
        const runs: [string, string][] = [];
        for (const s of streams) {
          const last = runs[runs.length - 1];
          if (last && last[0] === s.name) last[1] += s.text;
          else runs.push([s.name, s.text]);
        }
        const text = (name: string) =>
          streams
            .filter((s) => s.name === name)
            .map((s) => s.text)
            .join('');
        return {
          id,
          result,
          streams,
          stdout: text('stdout'),
          stderr: text('stderr'),
          output: streams.map((s) => s.text).join(''),
          runs,
        };
      },
    );
    return { id, done };
  }

  execute(code: string, maxOutputBytes?: number, timeoutMs?: number): Promise<CellRun> {
    return this.start(code, maxOutputBytes, timeoutMs).done;
  }

  /** Runs a cell that must succeed; returns its value. */
  async value(code: string): Promise<string | null> {
    const run = await this.execute(code);
    expect(run.result, JSON.stringify(run.result)).toMatchObject({ status: 'ok' });
    return (run.result as OkResult).value;
  }

  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const kernels: Kernel[] = [];

afterEach(() => {
  const violations = kernels.flatMap((k) => k.violations);
  for (const k of kernels.splice(0)) k.kill();
  expect(violations).toEqual([]);
});

function asError(run: CellRun): ErrorResult {
  expect(run.result.status, JSON.stringify(run.result)).toBe('error');
  return run.result as ErrorResult;
}

/** What /usr/bin/python3 itself prints on stderr for `code` saved as a script, with the script's
 * path replaced by `filename`. */
function pythonsOwnTraceback(code: string, filename: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'runcell-py-ref-'));
  try {
    const script = path.join(dir, 'cell.py');
    writeFileSync(script, code);
    try {
      execFileSync(PYTHON, ['-I', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      return (error as { stderr: Buffer }).stderr.toString().replaceAll(script, filename);
    }
    throw new Error('the reference script did not fail');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('python kernel driver', () => {
  it('announces itself with the interpreter version', async () => {
    const kernel = await Kernel.start();
    const ready = kernel.events[0];
    const version = execFileSync(PYTHON, ['-c', 'import platform; print(platform.python_version())'])
      .toString()
      .trim();
    expect(ready).toEqual({ type: 'ready', language: 'python', version });
    expect(version).toMatch(/^3\.\d+\.\d+$/);
  });

  it('keeps variables, functions and imports across cells', async () => {
    const kernel = await Kernel.start();
    expect(await kernel.value('x = 41')).toBeNull();
    expect(await kernel.value('x += 1')).toBeNull();
    expect(await kernel.value('def double(v):\n    return v * 2\nimport math')).toBeNull();
    expect(await kernel.value('double(x), math.floor(2.5), __name__')).toBe("(84, 2, '__main__')");
  });

  it('reports the repr of a trailing expression', async () => {
    const kernel = await Kernel.start();
    expect(await kernel.value('1+1')).toBe('2');
    expect(await kernel.value('None')).toBeNull();
    expect(await kernel.value("'a'")).toBe("'a'");
    expect(await kernel.value('y = 3')).toBeNull();
    expect(await kernel.value('y = 3\ny * 2')).toBe('6');
    expect(await kernel.value('print("p")')).toBeNull();
    // A trailing ';' hides the value, as in IPython.
    expect(await kernel.value('y;')).toBeNull();
    expect(await kernel.value('class R:\n    def __repr__(self):\n        return "<R é>"\nR()')).toBe(
      '<R é>',
    );
  });

  it('keeps stdout and stderr in the order they were written', async () => {
    const kernel = await Kernel.start();
    const run = await kernel.execute('import sys\nprint(1); print(2, file=sys.stderr); print(3)');
    expect(run.result).toEqual({ type: 'result', id: run.id, status: 'ok', value: null });
    expect(run.runs).toEqual([
      ['stdout', '1\n'],
      ['stderr', '2\n'],
      ['stdout', '3\n'],
    ]);
  });

  it('captures fd-level output of subprocesses before the result', async () => {
    const kernel = await Kernel.start();
    const run = await kernel.execute("import os\nos.system('echo hi')");
    expect(run.stdout).toBe('hi\n');
    expect((run.result as OkResult).value).toBe('0');
    const mixed = await kernel.execute(
      "import subprocess\nprint('a'); os.system('echo b'); print('c')\n" +
        "subprocess.run(['sh', '-c', 'echo d; echo e >&2'])\nos.write(1, b'f\\n')\nprint('g')",
    );
    expect(mixed.result.status).toBe('ok');
    expect(mixed.output).toBe('a\nb\nc\nd\ne\nf\ng\n');
    // Written to fd 1 just before the cell ends: still part of this cell.
    for (let i = 0; i < 20; i++) {
      expect((await kernel.execute(`os.write(1, b'last${i}\\n');`)).output).toBe(`last${i}\n`);
    }
    // fd-level and sys.stdout writes alternate without reordering.
    const alternate = await kernel.execute(
      "for i in range(300):\n    os.write(1, b'%d\\n' % i)\n    print(i)",
    );
    const expected = Array.from({ length: 300 }, (_, i) => `${i}\n${i}\n`).join('');
    expect(alternate.output).toBe(expected);
  });

  it('reports errors with a traceback of user code only, as Python prints it', async () => {
    const kernel = await Kernel.start();
    const code = 'x = 1\n1/0\n';
    const run = await kernel.execute(code);
    const error = asError(run);
    expect(error.ename).toBe('ZeroDivisionError');
    expect(error.evalue).toBe('division by zero');
    expect(error.interrupted).toBeUndefined();
    const text = error.traceback.join('');
    expect(text).toBe(pythonsOwnTraceback(code, `<cell-${run.id}>`));
    expect(text).toContain(`File "<cell-${run.id}>", line 2, in <module>\n    1/0\n`);
    expect(text.endsWith('ZeroDivisionError: division by zero\n')).toBe(true);

    // Frames from earlier cells and from imported modules, none of the driver's.
    await kernel.value('import json\ndef parse(s):\n    return json.loads(s)');
    const nested = asError(await kernel.execute('parse("{")'));
    expect(nested.ename).toBe('JSONDecodeError');
    const files = nested.traceback
      .join('')
      .split('\n')
      .filter((line) => line.startsWith('  File '))
      .map((line) => line.split('"')[1]);
    expect(files.slice(0, 2)).toEqual([`<cell-${run.id + 2}>`, `<cell-${run.id + 1}>`]);
    expect(files.slice(2).every((f) => f!.endsWith('.py') && f!.includes('json'))).toBe(true);
    expect(nested.traceback.join('')).toContain('    return json.loads(s)\n');
  });

  it('reports syntax errors like Python, without running any of the cell', async () => {
    const kernel = await Kernel.start();
    const code = "print('ran')\nx = (1 +\n";
    const run = await kernel.execute(code);
    const error = asError(run);
    expect(error.ename).toBe('SyntaxError');
    expect(run.output).toBe('');
    expect(error.traceback.join('')).toBe(pythonsOwnTraceback(code, `<cell-${run.id}>`));
    expect(error.traceback[0]).toBe(`  File "<cell-${run.id}>", line 2\n`);

    const simple = await kernel.execute('1 +');
    expect(asError(simple).traceback.join('')).toBe(
      `  File "<cell-${simple.id}>", line 1\n    1 +\n       ^\nSyntaxError: invalid syntax\n`,
    );

    // An error the compiler (not the parser) finds must also stop the whole cell.
    const late = await kernel.execute("print('ran')\nreturn 5");
    expect(asError(late).ename).toBe('SyntaxError');
    expect(asError(late).evalue).toContain("'return' outside function");
    expect(late.output).toBe('');

    const indent = await kernel.execute('if True:\nprint(1)');
    expect(asError(indent).ename).toBe('IndentationError');
    expect(asError(indent).traceback.join('')).toContain(
      `File "<cell-${indent.id}>", line 2\n    print(1)\n`,
    );
  });

  it('interrupts a blocking call promptly and keeps the context', async () => {
    const kernel = await Kernel.start();
    await kernel.value('kept = "still here"');
    const cell = kernel.start("import time\nprint('sleeping', flush=True)\ntime.sleep(30)\nprint('woke')");
    await kernel.waitFor((e): e is StreamEvent => e.type === 'stream' && e.id === cell.id);
    const sent = Date.now();
    kernel.send({ type: 'interrupt', id: cell.id });
    const run = await cell.done;
    expect(Date.now() - sent).toBeLessThan(2000);
    const error = asError(run);
    expect(error.ename).toBe('KeyboardInterrupt');
    expect(error.interrupted).toBe(true);
    expect(error.traceback.join('')).toContain(
      `File "<cell-${cell.id}>", line 3, in <module>\n    time.sleep(30)`,
    );
    expect(run.stdout).toBe('sleeping\n');
    expect(await kernel.value('kept')).toBe("'still here'");
  });

  it('interrupts a pure-Python busy loop', async () => {
    const kernel = await Kernel.start();
    const cell = kernel.start("n = 0\nprint('go')\nwhile True:\n    n += 1");
    await kernel.waitFor((e): e is StreamEvent => e.type === 'stream' && e.id === cell.id);
    const sent = Date.now();
    kernel.send({ type: 'interrupt', id: cell.id });
    const error = asError(await cell.done);
    expect(Date.now() - sent).toBeLessThan(2000);
    expect(error).toMatchObject({ ename: 'KeyboardInterrupt', interrupted: true });
    expect(Number(await kernel.value('n'))).toBeGreaterThan(0);
  });

  it('interrupts a cell that is printing in a loop', async () => {
    const kernel = await Kernel.start();
    const cell = kernel.start('i = 0\nwhile True:\n    print(i)\n    i += 1', 1 << 30);
    await kernel.waitFor((e): e is StreamEvent => e.type === 'stream' && e.id === cell.id);
    await new Promise((resolve) => setTimeout(resolve, 50)); // let it print a while
    kernel.send({ type: 'interrupt', id: cell.id });
    const run = await cell.done;
    expect(asError(run)).toMatchObject({ ename: 'KeyboardInterrupt', interrupted: true });
    // No output is lost or mangled around the interrupt: the lines are 0, 1, 2, ... in order.
    const lines = run.stdout.split('\n');
    const complete = lines.slice(0, -1).map(Number);
    expect(complete.length).toBeGreaterThan(10);
    expect(complete).toEqual(complete.map((_, i) => i));
    expect(await kernel.value('1 + 1')).toBe('2');
  });

  it('never cuts a frame when interrupted while sending large output', async () => {
    const kernel = await Kernel.start();
    for (let round = 0; round < 3; round++) {
      const cell = kernel.start("while True:\n    print('x' * 1_000_000)", 1 << 30, 20_000);
      await kernel.waitFor((e): e is StreamEvent => e.type === 'stream' && e.id === cell.id);
      await new Promise((resolve) => setTimeout(resolve, 50));
      kernel.send({ type: 'interrupt', id: cell.id });
      const run = await cell.done;
      expect(asError(run)).toMatchObject({ ename: 'KeyboardInterrupt', interrupted: true });
      expect(run.stdout.length).toBeGreaterThan(1_000_000);
      expect(/^[x\n]*$/.test(run.stdout)).toBe(true);
    }
    expect(await kernel.value('"alive"')).toBe("'alive'");
  });

  it('ignores interrupts for cells that are not running', async () => {
    const kernel = await Kernel.start();
    kernel.send({ type: 'interrupt', id: 999 });
    const cell = kernel.start('import time\ntime.sleep(0.3)\n"done"');
    kernel.send({ type: 'interrupt', id: cell.id + 1 });
    const run = await cell.done;
    expect(run.result).toEqual({ type: 'result', id: cell.id, status: 'ok', value: "'done'" });
  });

  it('reports a KeyboardInterrupt raised by the cell itself as not interrupted', async () => {
    const kernel = await Kernel.start();
    const error = asError(await kernel.execute('raise KeyboardInterrupt'));
    expect(error.ename).toBe('KeyboardInterrupt');
    expect(error.interrupted).toBeUndefined();
  });

  it('caps output at maxOutputBytes and stays usable', async () => {
    const kernel = await Kernel.start();
    const big = await kernel.execute("print('x' * 10_000_000)", 1000);
    expect(Buffer.byteLength(big.output)).toBe(1000);
    expect(big.output).toBe('x'.repeat(1000));
    expect(big.result).toMatchObject({ status: 'ok', value: null, dropped: 10_000_001 - 1000 });

    const started = Date.now();
    const loop = await kernel.execute('for i in range(300_000):\n    print(i)', 1000);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(Buffer.byteLength(loop.output)).toBeLessThanOrEqual(1000);
    expect(loop.output.startsWith('0\n1\n2\n')).toBe(true);
    expect(loop.result.dropped).toBeGreaterThan(0);

    // Multi-byte characters are never cut in half.
    const wide = await kernel.execute("print('é' * 1000)", 1001);
    expect(wide.output).toBe('é'.repeat(500));
    expect(wide.result.dropped).toBe(2001 - 1000);

    // Output of subprocesses counts too, and is drained (the process does not block on a full pipe).
    const fd = await kernel.execute(
      'import os\nos.system(\'head -c 3000000 /dev/zero | tr "\\\\0" z\')',
      1000,
    );
    expect(fd.output).toBe('z'.repeat(1000));
    expect(fd.result).toMatchObject({ status: 'ok', value: '0', dropped: 3_000_000 - 1000 });

    // A huge trailing value is cut to the cap as well.
    const value = await kernel.execute("'v' * 5000", 1000);
    expect(value.result).toMatchObject({ status: 'ok', value: "'" + 'v'.repeat(999), dropped: 5002 - 1000 });

    expect(await kernel.value('1 + 1')).toBe('2');
    const after = await kernel.execute('print("small")', 1000);
    expect(after.output).toBe('small\n');
    expect(after.result.dropped).toBeUndefined();
  });

  it('supports top-level await', async () => {
    const kernel = await Kernel.start();
    expect(await kernel.value('import asyncio\nawait asyncio.sleep(0.01)\n5')).toBe('5');
    expect(
      await kernel.value('async def twice(v):\n    await asyncio.sleep(0)\n    return 2 * v'),
    ).toBeNull();
    expect(await kernel.value('await twice(21)')).toBe('42');
    const error = asError(await kernel.execute('await asyncio.sleep(0)\n1/0'));
    expect(error.ename).toBe('ZeroDivisionError');
    expect(error.traceback[1]).toMatch(/^ {2}File "<cell-\d+>", line 2, in <module>/);
    expect(error.traceback.join('')).not.toContain('asyncio');
    // Plain asyncio.run still works in a cell without await.
    expect(await kernel.value('asyncio.run(twice(4))')).toBe('8');
  });

  it('survives cells that break sys.stdout and sys.stderr', async () => {
    const kernel = await Kernel.start();
    expect((await kernel.execute('import sys\nsys.stdout = None\nprint("lost")')).output).toBe('');
    expect((await kernel.execute('print("back")')).stdout).toBe('back\n');
    await kernel.execute('sys.stdout.close()\nsys.stderr.close()');
    expect((await kernel.execute('print("again"); print("err", file=sys.stderr)')).runs).toEqual([
      ['stdout', 'again\n'],
      ['stderr', 'err\n'],
    ]);
    expect((await kernel.execute('print("dunder", file=sys.__stdout__)')).stdout).toBe('dunder\n');
    const binary = await kernel.execute("sys.stdout.buffer.write(b'\\xffbin\\n')\nsys.stdout.buffer.flush()");
    expect(binary.stdout).toBe('\ufffdbin\n');
    const huge = await kernel.execute("print('h' * 3_000_000)", 8 << 20);
    expect(huge.stdout).toBe('h'.repeat(3_000_000) + '\n');
    expect((await kernel.execute('__builtins__ = None')).result.status).toBe('ok');
    expect(await kernel.value('len("abc")')).toBe('3');
  });

  it('attributes output of background threads to the running cell, or drops it', async () => {
    const kernel = await Kernel.start();
    const first = await kernel.execute(
      'import threading, time\n' +
        "def late():\n    time.sleep(0.3)\n    print('late')\n    time.sleep(0.6)\n    print('later')\n" +
        'threading.Thread(target=late).start()',
    );
    expect(first.output).toBe('');
    const second = await kernel.execute('time.sleep(0.6)');
    expect(second.output).toBe('late\n');
    await new Promise((resolve) => setTimeout(resolve, 600));
    // 'later' was printed between cells: nobody gets it.
    expect((await kernel.execute('print("own")')).output).toBe('own\n');
  });

  it('reports SystemExit as an error and keeps running', async () => {
    const kernel = await Kernel.start();
    await kernel.value('z = 7');
    const error = asError(await kernel.execute('import sys\nsys.exit(3)'));
    expect(error).toMatchObject({ ename: 'SystemExit', evalue: '3' });
    expect(error.traceback.join('')).toContain('    sys.exit(3)\n');
    expect(await kernel.value('z')).toBe('7');
  });

  it('exits when the request channel closes', async () => {
    const kernel = await Kernel.start();
    (kernel.proc.stdio[3] as Writable).end();
    const exit = await Promise.race([
      kernel.exited,
      new Promise((resolve) => setTimeout(() => resolve('still running'), 3000)),
    ]);
    expect(exit).toEqual({ code: 0, signal: null });
  });
});
