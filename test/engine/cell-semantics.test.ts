/** What a cell does, end to end through real sandboxed kernels. */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notebookId, run, startApp } from '../helpers.ts';

let app: FastifyInstance;
beforeAll(async () => {
  app = await startApp({
    interruptGraceMs: 1000,
    kernelMemoryMb: 256,
    kernelTmpMb: 128,
    maxOutputBytes: 4096,
  });
});
afterAll(() => app.close());

describe('Python cells', () => {
  it('keep variables, imports and definitions across submissions', async () => {
    const nb = notebookId();
    await run(app, nb, ['import math\nx = 2', 'def f(y):\n    return y * x']);
    const status = await run(app, nb, ['print(f(21), math.floor(2.5))']);
    expect(status.results[0]!.output).toBe('42 2\n');
  });

  it('show the trailing expression as a REPL does, and nothing for None', async () => {
    const status = await run(app, notebookId(), ['1+1', 'None', "print('a'); 'b'", 'x = 5']);
    expect(status.results.map((r) => r.output)).toEqual(['2', '', "a\n'b'", '']);
  });

  it('interleave stdout and stderr in the order written, including subprocesses', async () => {
    const status = await run(app, notebookId(), [
      "import sys, os\nprint('out1')\nprint('err1', file=sys.stderr)\nos.system('echo sub')\nprint('out2')",
    ]);
    expect(status.results[0]!.output).toBe('out1\nerr1\nsub\nout2\n');
  });

  it('report an exception with a traceback of the user code only, and stop there', async () => {
    const status = await run(app, notebookId(), [
      'x = 1',
      'def g():\n    return 1/0\ng()',
      'print("not run")',
    ]);
    expect(status.status).toBe('error');
    expect(status.cellsExecuted).toEqual(['c0', 'c1']);
    const error = status.results[1]!;
    expect(error.type).toBe('error');
    expect(error.output).toMatch(/^Traceback \(most recent call last\):\n/);
    expect(error.output).toContain('return 1/0');
    expect(error.output).toMatch(/ZeroDivisionError: division by zero\n?$/);
    expect(error.output).not.toMatch(/driver|runcell|<string>/);
    expect(error.outputs.at(-1)).toMatchObject({ output_type: 'error', ename: 'ZeroDivisionError' });
  });

  it('run later cells after an error when stopOnError is false', async () => {
    const status = await run(app, notebookId(), ['raise ValueError("bad")', 'print("ran")'], {
      stopOnError: false,
    });
    expect(status.status).toBe('error');
    expect(status.cellsExecuted).toEqual(['c0', 'c1']);
    expect(status.results.map((r) => r.type)).toEqual(['error', 'output']);
    expect(status.results[1]!.output).toBe('ran\n');
  });

  it('report a syntax error with its line', async () => {
    const status = await run(app, notebookId(), ['x = 1\ny = (']);
    expect(status.results[0]!.type).toBe('error');
    expect(status.results[0]!.output).toMatch(/SyntaxError/);
    expect(status.results[0]!.output).toMatch(/line 2/);
  });

  it('interrupt a cell past its timeout and keep the context', async () => {
    const nb = notebookId();
    const status = await run(app, nb, ['keep = "kept"', 'import time\ntime.sleep(30)'], { timeout: 1 });
    const timedOut = status.results[1]!;
    expect(timedOut.type).toBe('error');
    expect(timedOut.timedOut).toBe(true);
    expect(timedOut.output).toMatch(/KeyboardInterrupt/);
    expect(timedOut.output).toMatch(/timed out after 1 s/);
    expect((await run(app, nb, ['keep'])).results[0]!.output).toBe("'kept'");
  });

  it('kill a kernel that ignores the interrupt, say the context was reset, and carry on', async () => {
    const nb = notebookId();
    const stubborn =
      'import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass';
    const status = await run(app, nb, ['gone = 1', stubborn], { timeout: 1 });
    expect(status.status).toBe('error');
    const critical = status.results[1]!;
    expect(critical.type).toBe('critical');
    expect(critical.timedOut).toBe(true);
    expect(critical.output).toMatch(/timed out after 1 s.*killed.*context was reset/s);
    const after = await run(app, nb, ['gone']);
    expect(after.results[0]!.type).toBe('error');
    expect(after.results[0]!.output).toMatch(/NameError/);
    expect(after.results[0]!.contextLost).toBe(true);
  });

  it('report a kernel that exits as critical, never a hang', async () => {
    const nb = notebookId();
    const status = await run(app, nb, ['import os; os._exit(3)']);
    expect(status.results[0]).toMatchObject({ type: 'critical', contextLost: true });
    expect(status.results[0]!.output).toMatch(/exited with code 3/);
    expect((await run(app, nb, ['print("back")'])).results[0]!.output).toBe('back\n');
  });

  it('fail a big allocation with MemoryError and keep the context', async () => {
    const nb = notebookId();
    const status = await run(app, nb, ['kept = 1', "x = b'x' * (600 << 20)"], { stopOnError: false });
    expect(status.results[1]!.type).toBe('error');
    expect(status.results[1]!.output).toMatch(/MemoryError/);
    expect((await run(app, nb, ['kept'])).results[0]!.output).toBe('1');
  });

  it('report a kernel killed at the memory limit as running out of memory', async () => {
    // The address-space cap stops one big allocation, but tmpfs pages count against the memory
    // cgroup too: a kernel near its cap that fills /tmp is killed by the OOM killer.
    const nb = notebookId();
    const status = await run(app, nb, [
      "x = b'x' * (150 << 20)\nopen('/tmp/fill', 'wb').write(b'y' * (120 << 20))",
    ]);
    expect(status.results[0]!.type).toBe('critical');
    expect(status.results[0]!.output).toMatch(/out of memory \(limit 256 MiB\)/);
    expect((await run(app, nb, ['print("back")'])).results[0]!.output).toBe('back\n');
  });

  it('cap the output of a cell and say so', async () => {
    const status = await run(app, notebookId(), ["print('y' * 100000)\nprint('done')"]);
    const result = status.results[0]!;
    expect(result.droppedBytes).toBeGreaterThan(90000);
    expect(result.output.length).toBeLessThan(4096 + 200);
    expect(result.output).toMatch(/\[output truncated: \d+ bytes dropped, limit 4096 bytes\]/);
  });

  it('cannot be confused by a cell that writes binary or closes stdout', async () => {
    const nb = notebookId();
    const status = await run(app, nb, [
      "import sys, os\nsys.stdout.buffer.write(b'\\x00\\xff\\x00\\x00\\x00\\x05{}')\nsys.stdout.flush()",
      'import sys, os\nsys.stdout.close()\nos.close(1)',
      'print("still here")',
    ]);
    expect(status.results[2]!.output).toBe('still here\n');
  });

  it('run under the seccomp filter: namespaces and ptrace are denied', async () => {
    const status = await run(app, notebookId(), [
      "print(open('/proc/self/status').read().split('Seccomp:')[1].split()[0])",
      'import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.unshare(0x10000000), ctypes.get_errno(), libc.ptrace(0, 0, 0, 0), ctypes.get_errno())',
    ]);
    expect(status.results.map((r) => r.output)).toEqual(['2\n', '-1 1 -1 1\n']);
  });

  it('cannot read host secrets or reach the network', async () => {
    const status = await run(app, notebookId(), [
      "import os\nprint(os.path.exists('/etc/shadow'), os.getuid() != 0)",
      "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 6379), timeout=2); print('connected')\nexcept OSError: print('no network')",
      "print(open('/proc/1/environ').read() == '', sorted(os.environ))",
    ]);
    expect(status.results.map((r) => r.output)).toEqual([
      'False True\n',
      'no network\n',
      "True ['HOME', 'LANG', 'LC_ALL', 'MALLOC_ARENA_MAX', 'MPLBACKEND', 'MPLCONFIGDIR', 'PATH', 'PWD', 'TMPDIR', 'USER', 'XDG_CACHE_HOME']\n",
    ]);
  });
});

describe('rich outputs', () => {
  const RICH = `
class Rich:
    def __repr__(self): return 'Rich()'
    def _repr_html_(self): return '<b>rich</b>'
    def _repr_png_(self): return b'\\x89PNG'
class Bundle:
    def _repr_mimebundle_(self, **kw): return {'text/plain': 'B', 'application/vnd.custom+json': {'a': 1}}
`;
  it('gives a trailing value its mime bundle, as IPython does', async () => {
    const status = await run(app, notebookId(), [RICH, 'Rich()', 'Bundle()', '42']);
    const [, rich, bundle, plain] = status.results;
    expect(rich!.output).toBe('Rich()');
    expect(rich!.outputs).toEqual([
      {
        output_type: 'execute_result',
        data: {
          'text/plain': 'Rich()',
          'text/html': '<b>rich</b>',
          'image/png': Buffer.from('\x89PNG', 'latin1').toString('base64'),
        },
        metadata: {},
      },
    ]);
    expect(bundle!.outputs[0]).toMatchObject({
      data: { 'text/plain': 'B', 'application/vnd.custom+json': { a: 1 } },
    });
    expect(plain!.outputs).toEqual([
      { output_type: 'execute_result', data: { 'text/plain': '42' }, metadata: {} },
    ]);
  });

  it('shows display() outputs in order with what the cell prints', async () => {
    const status = await run(app, notebookId(), [
      RICH,
      "print('before')\ndisplay(Rich(), 7)\nprint('after')",
    ]);
    const result = status.results[1]!;
    expect(result.outputs.map((o) => o.output_type)).toEqual([
      'stream',
      'display_data',
      'display_data',
      'stream',
    ]);
    expect(result.outputs[1]).toMatchObject({ data: { 'text/html': '<b>rich</b>', 'text/plain': 'Rich()' } });
    expect(result.outputs[2]).toMatchObject({ data: { 'text/plain': '7' } });
    expect(result.output).toBe('before\nRich()\n7\nafter\n');
  });
});

describe('a notebook in two languages', () => {
  it('shares its workspace between its Python and JavaScript kernels', async () => {
    const nb = notebookId();
    const status = await run(app, nb, [
      "open('shared.txt', 'w').write('from python\\n')",
      { code: "require('fs').appendFileSync('shared.txt', 'from js\\n')", language: 'javascript' },
      "print(open('shared.txt').read(), end='')",
    ]);
    expect(status.results.map((r) => r.type)).toEqual(['output', 'output', 'output']);
    expect(status.results[2]!.output).toBe('from python\nfrom js\n');
  });
});

describe('TypeScript cells', () => {
  it('strip types per cell and keep REPL semantics', async () => {
    const nb = notebookId();
    const status = await run(
      app,
      nb,
      [
        "interface User { name: string }\nconst u: User = { name: 'Bob' }",
        "const u: User = { name: 'Alice' }",
        'enum Color { Red, Green }\nColor.Green',
        'const n: number = await Promise.resolve(41)\nn + 1',
        'u.name',
      ],
      { language: 'typescript' },
    );
    expect(status.status).toBe('success');
    expect(status.results.map((r) => r.output)).toEqual(['', '', '1', '42', "'Alice'"]);
  });

  it('report a syntax error with its line, and the kernel goes on', async () => {
    const nb = notebookId();
    const status = await run(app, nb, ['const ok: string = "yes"', 'const x: number = 1\nconst y: = 2'], {
      language: 'typescript',
      stopOnError: false,
    });
    expect(status.results[1]!.type).toBe('error');
    expect(status.results[1]!.output).toMatch(/cell\.ts:2:\d+/);
    expect(status.results[1]!.output).toMatch(/SyntaxError/);
    expect((await run(app, nb, ['ok'], { language: 'typescript' })).results[0]!.output).toBe("'yes'");
  });
});

describe('JavaScript cells', () => {
  it('have REPL semantics: re-declaration, top-level await, trailing value', async () => {
    const nb = notebookId();
    const status = await run(
      app,
      nb,
      [
        "const name = 'Bob'",
        "const name = 'Alice'",
        'class A {}',
        'class A { x = 1 }',
        'await new Promise((r) => setTimeout(() => r(name), 10))',
        '1+1',
        'let u',
      ],
      { language: 'javascript' },
    );
    expect(status.status).toBe('success');
    expect(status.results.map((r) => r.output)).toEqual(['', '', '', '', "'Alice'", '2', '']);
  });

  it('report a thrown error with its stack and the error type', async () => {
    const status = await run(app, notebookId(), ["function f() { throw new TypeError('boom') }\nf()"], {
      language: 'javascript',
    });
    const result = status.results[0]!;
    expect(result.type).toBe('error');
    expect(result.output).toMatch(/^TypeError: boom\n/);
    expect(result.output).not.toMatch(/node:internal|driver/);
  });

  it('interrupt a busy loop past its timeout and keep the context', async () => {
    const nb = notebookId();
    const status = await run(app, nb, ['var kept = 7', 'while (true) {}'], {
      language: 'javascript',
      timeout: 1,
    });
    expect(status.results[1]).toMatchObject({ type: 'error', timedOut: true });
    expect((await run(app, nb, ['kept'], { language: 'javascript' })).results[0]!.output).toBe('7');
  });

  it('report a heap exhausted as critical, and start fresh after', async () => {
    const nb = notebookId();
    const status = await run(app, nb, ['const a = []; while (true) a.push(new Array(1e6).fill(1))'], {
      language: 'javascript',
      timeout: 60,
    });
    expect(status.results[0]!.type).toBe('critical');
    expect((await run(app, nb, ['1'], { language: 'javascript' })).results[0]!.output).toBe('1');
  });
});
