/**
 * Exploit suite: the kernel protocol and kernel death. fds 3 and 4 carry the framed channel
 * between server and driver; user code can reach them on purpose. Whatever it writes there,
 * however it kills or crashes its own kernel, and whatever bytes it prints, the result must be
 * the notebook's own (a critical result, or at worst its own wrong one), the kernel replaced,
 * the server unharmed and other notebooks unaffected.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attack,
  Bystander,
  closeAndCheck,
  LIMITS,
  notebookId,
  py,
  run,
  startSecurityApp,
  underAttack,
  type SecurityApp,
} from './helpers.ts';

let sa: SecurityApp;
let app: FastifyInstance;
beforeAll(async () => {
  sa = await startSecurityApp();
  app = sa.app;
});
afterAll(() => closeAndCheck(sa));

/** Python that writes raw bytes to the event channel, fd 4. */
const FRAME = py`import json, os, struct
def frame(message):
    body = json.dumps(message).encode() if not isinstance(message, bytes) else message
    return struct.pack('>I', len(body)) + body
`;

/** The notebook works again, in a fresh context (its kernel was replaced). */
async function expectFreshKernel(nb: string, language = 'python') {
  const status = await run(app, nb, [language === 'python' ? 'print("fresh")' : 'console.log("fresh")'], {
    language,
  });
  expect(status.results[0]).toMatchObject({ type: 'output', output: 'fresh\n', contextLost: true });
}

/** Records exceptions nobody caught in this (the server's) process while `fn` runs. */
async function catchingUncaught<T>(fn: () => Promise<T>): Promise<{ value: T; uncaught: string[] }> {
  const uncaught: string[] = [];
  const listener = (err: unknown) => uncaught.push(String(err));
  process.on('uncaughtException', listener);
  try {
    const value = await fn();
    await new Promise((r) => setTimeout(r, 100));
    return { value, uncaught };
  } finally {
    process.off('uncaughtException', listener);
  }
}

describe('the event channel (fd 4)', () => {
  it('garbage and an oversized length prefix on fd 4 kill only that kernel (critical), at once', async () => {
    // Attack: write what is not a frame to fd 4: a length prefix of 4 GiB (Python), text whose
    // first 4 bytes read as a 1.8 GB length (JavaScript), a small frame that is not JSON.
    // Containment: the server's decoder rejects it, kills that kernel and reports a critical
    // result at once (no waiting for the timeout); the next cell gets a fresh kernel.
    const bystander = await Bystander.start(app);
    const nb = notebookId('garbage');
    const started = performance.now();
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          {
            cellId: 'huge',
            code: "import os\nos.write(4, b'\\xff\\xff\\xff\\xffgarbage')\nimport time; time.sleep(5)",
          },
          {
            cellId: 'text',
            language: 'javascript',
            code: "require('fs').writeSync(4, 'not a frame at all'); await new Promise((r) => setTimeout(r, 5000))",
          },
          {
            cellId: 'json',
            code: "import os\nos.write(4, b'\\x00\\x00\\x00\\x05{{{{{')\nimport time; time.sleep(5)",
          },
        ],
        stopOnError: false,
        timeout: 10,
      },
      100,
    );
    expect(status.results.map((r) => [r.cellId, r.type, r.timedOut])).toEqual([
      ['huge', 'critical', false],
      ['text', 'critical', false],
      ['json', 'critical', false],
    ]);
    expect(status.results[0]!.output).toMatch(
      /broke its protocol channel \(frame of 4294967295 bytes exceeds the limit\)/,
    );
    expect(status.results[2]!.output).toMatch(/broke its protocol channel \(frame is not valid JSON\)/);
    // Three cells, each with a 5 s sleep after the attack: none of them waited for it.
    expect(performance.now() - started).toBeLessThan(5000);
    await expectFreshKernel(nb);
  });

  it('a partial frame that swallows the real result ends at the timeout, never hangs', async () => {
    // Attack: announce a 32 MiB frame and never finish it, so the server keeps reading the
    // driver's real frames (the result included) into it. Containment: the wall clock: at the
    // timeout the interrupt goes unanswered, and after the grace period the kernel is killed:
    // a critical, timed-out result. The server buffers at most the frame limit (64 MiB).
    const bystander = await Bystander.start(app);
    const nb = notebookId('partial');
    const started = performance.now();
    const status = await underAttack(
      app,
      bystander,
      attack(nb, "import os, struct\nos.write(4, struct.pack('>I', 32 << 20))\nprint('done')", {
        timeout: 1,
      }),
    );
    expect(status.results[0]).toMatchObject({ type: 'critical', timedOut: true });
    expect(performance.now() - started).toBeLessThan(1000 + LIMITS.interruptGraceMs + 2500);
    await expectFreshKernel(nb);
  });

  it('a forged result frame gives the notebook at worst its own wrong result', async () => {
    // Attack: frames are not authenticated: the cell writes a stream frame and a result frame
    // for its own cell id (ids count up from 1 per kernel) before the real ones. Containment:
    // this is the notebook lying to itself: the forged result is taken as the cell's, the real
    // one is dropped (it names a cell that is no longer running), and the next cell runs
    // normally. No other notebook's channel is reachable.
    const bystander = await Bystander.start(app);
    const nb = notebookId('forge');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        FRAME +
          py`os.write(4, frame({'type': 'stream', 'id': 1, 'name': 'stdout', 'text': 'forged output\n'}))
os.write(4, frame({'type': 'result', 'id': 1, 'status': 'ok', 'value': "'forged value'"}))
# A frame for a later cell, sent now, must not be taken for that cell when it runs.
os.write(4, frame({'type': 'result', 'id': 2, 'status': 'ok', 'value': "'forged in advance'"}))
import time
time.sleep(0.3)
print('real output')
secret = 'kept'`,
      ),
      100,
    );
    expect(status.results[0]).toMatchObject({ type: 'output', output: "forged output\n'forged value'" });
    const next = await run(app, nb, ['print(secret)']);
    expect(next.results[0]).toMatchObject({ type: 'output', output: 'kept\n', contextLost: false });
  });

  it('frames of the wrong shape (bad field types, arrays, numbers, strings) do not break the server', async () => {
    // Attack: valid JSON that is not a valid event: a result whose fields have the wrong types
    // (ename an object, traceback a string, dropped a string), a stream whose text is not a
    // string, and bare arrays, numbers and strings. Containment: the server reads events
    // defensively: the cell gets a critical result (the kernel is replaced) or at worst its own
    // odd result, the status of the submission can still be read, and the next cell runs.
    const bystander = await Bystander.start(app);
    const nb = notebookId('shapes');
    const { value: status, uncaught } = await catchingUncaught(() =>
      underAttack(
        app,
        bystander,
        attack(
          nb,
          FRAME +
            py`for m in [[], 42, 'text', True, {'type': 'stream', 'id': 1, 'name': 'stdout', 'text': {'a': 1}},
          {'type': 'stream', 'id': 1, 'name': 'evil', 'text': 'odd stream\n'}, {'type': 'ready'},
          {'type': 'result', 'id': 1, 'status': 'error', 'ename': {'x': 1}, 'evalue': None,
           'traceback': 'not a list', 'dropped': 'lots'}]:
    os.write(4, frame(m))
import time
time.sleep(0.3)`,
        ),
        100,
      ),
    );
    expect(uncaught).toEqual([]);
    const result = status.results[0]!;
    // Either the server ignored what it could not use (the cell's own odd result), or it
    // treated the channel as broken and replaced the kernel.
    if (result.type === 'critical') {
      expect(result.output).toMatch(/malformed message on its protocol channel|broke its protocol channel/);
    } else {
      expect(result.type).toBe('error');
      expect(result.output).toContain('odd stream');
    }
    expect(typeof result.droppedBytes).toBe('number');
    expect((await run(app, nb, ['print("next")'])).results[0]!.output).toBe('next\n');
  });

  it('a JSON null frame does not throw in the server', async () => {
    // Attack: the frame `null` is valid JSON; code that reads event.type from it throws. In a
    // stream 'data' handler that is an uncaught exception: it would take the whole server
    // down, every notebook with it. Containment: the server must treat it as a broken channel
    // (kill this kernel, critical result) or ignore it, and never throw.
    const bystander = await Bystander.start(app);
    const nb = notebookId('null-frame');
    const { value: status, uncaught } = await catchingUncaught(() =>
      underAttack(
        app,
        bystander,
        attack(
          nb,
          "import os, time\nos.write(4, b'\\x00\\x00\\x00\\x04null')\ntime.sleep(0.3)\nprint('after')",
        ),
        100,
      ),
    );
    expect(uncaught).toEqual([]);
    expect(['output', 'critical']).toContain(status.results[0]!.type);
    expect((await run(app, nb, ['print("next")'])).results[0]!.output).toBe('next\n');
  });

  it('a flood of valid frames is capped like any output and leaves the server responsive', async () => {
    // Attack: skip the driver and write stream frames for the running cell straight to fd 4,
    // as fast as possible: the server parses every one. Containment: the output cap bounds
    // what is kept, the kernel's CPU quota bounds how fast frames come, the bystander (checked
    // while the flood runs) still answers promptly, and the cell ends at its timeout.
    const bystander = await Bystander.start(app);
    const nb = notebookId('frameflood');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        FRAME +
          py`data = frame({'type': 'stream', 'id': 1, 'name': 'stdout', 'text': 'f' * 60000}) * 16
while True:
    os.write(4, data)`,
        { timeout: 2 },
      ),
      500,
    );
    const result = status.results[0]!;
    // Interrupted (error), or killed (critical): the KeyboardInterrupt can land in the middle of
    // a partial os.write, and the half frame then breaks the channel.
    expect(['error', 'critical']).toContain(result.type);
    expect(result.timedOut).toBe(true);
    expect(Buffer.byteLength(result.output)).toBeLessThan(LIMITS.maxOutputBytes + 4096);
    if (result.type === 'error') expect(result.droppedBytes).toBeGreaterThan(10_000_000);
  });
});

describe('the channel descriptors themselves', () => {
  it('closing fd 4 ends that kernel with a critical result; the next cell gets a new one', async () => {
    // Attack: close the event channel, from Python and from JavaScript. Containment: the
    // driver cannot report any more and exits; the server reports the exit as critical and
    // starts a fresh kernel for the next cell.
    const bystander = await Bystander.start(app);
    const nb = notebookId('close4');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'py4', code: "import os\nos.close(4)\nprint('closed')" },
          { cellId: 'js4', language: 'javascript', code: "require('fs').closeSync(4); 'closed'" },
        ],
        stopOnError: false,
        timeout: 2,
      },
      100,
    );
    expect(status.results.map((r) => [r.cellId, r.type])).toEqual([
      ['py4', 'critical'],
      ['js4', 'critical'],
    ]);
    await expectFreshKernel(nb);
    await expectFreshKernel(nb, 'javascript');
  });

  it('closing fd 3 (the request channel) never hangs the notebook, and it recovers', async () => {
    // Attack: close the request channel under the driver's blocked read. What follows is racy
    // by nature: the read in flight still takes one more request, then the reader fails (or
    // reads whatever file is opened as fd 3 next). Containment: every later cell ends, with
    // its real output or a critical result, within its timeout plus the grace period, and the
    // notebook gets a working kernel again.
    const bystander = await Bystander.start(app);
    const nb = notebookId('close3');
    const started = performance.now();
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'close', code: "import os\nos.close(3)\nprint('closed')" },
          { cellId: 'a1', code: "print('after')" },
          { cellId: 'a2', code: "print('after')" },
          { cellId: 'a3', code: "print('after')" },
        ],
        stopOnError: false,
        timeout: 1,
      },
      100,
    );
    expect(performance.now() - started).toBeLessThan(4 * (1000 + LIMITS.interruptGraceMs) + 2000);
    for (const r of status.results) {
      expect(`${r.cellId}: ${r.type === 'output' ? r.output : r.type}`).toMatch(
        /^\w+: (closed\n|after\n|critical)$/,
      );
    }
    expect(status.results.map((r) => r.type)).toContain('critical');
    const recovered = await run(app, nb, ["print('recovered')"]);
    expect(recovered.results[0]).toMatchObject({ type: 'output', output: 'recovered\n' });
  });

  it('pointing fd 4 at a file (close, then open) is critical, at the latest at the timeout', async () => {
    // Attack: close fd 4 and open a workspace file, which gets fd 4: the driver's frames now
    // go into the file and the server hears nothing. Containment: the server notices its end
    // of the channel closing and replaces the kernel, or, at the latest, the wall clock does.
    const bystander = await Bystander.start(app);
    const nb = notebookId('reuse4');
    const started = performance.now();
    const status = await underAttack(
      app,
      bystander,
      attack(nb, "import os\nos.close(4)\nfd = os.open('frames.bin', os.O_WRONLY | os.O_CREAT)\nprint(fd)", {
        timeout: 1,
      }),
    );
    expect(status.results[0]).toMatchObject({ type: 'critical' });
    expect(performance.now() - started).toBeLessThan(1000 + LIMITS.interruptGraceMs + 2500);
    await expectFreshKernel(nb);
  });

  it('stealing its own request channel (fd 3 swapped for a dead pipe) ends at the timeout as critical', async () => {
    // Attack: dup2 a pipe nobody writes onto fd 3: once the driver's read in flight returns,
    // it reads the dead pipe and never sees another execute or interrupt request.
    // Containment: the lost cell's timeout, then the kill after the grace period; the
    // notebook then gets a fresh kernel.
    const bystander = await Bystander.start(app);
    const nb = notebookId('steal3');
    await run(app, nb, ['import os\nr, w = os.pipe()\nos.dup2(r, 3)']);
    const started = performance.now();
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        // The first may still be read by the read in flight; the second cannot be.
        cells: [
          { cellId: 'maybe', code: 'print("ran")' },
          { cellId: 'lost', code: 'print("ran")' },
        ],
        timeout: 1,
      },
      100,
    );
    expect(performance.now() - started).toBeLessThan(2 * (1000 + LIMITS.interruptGraceMs) + 2500);
    const last = status.results.at(-1)!;
    expect(last).toMatchObject({ type: 'critical', timedOut: true });
    for (const r of status.results.slice(0, -1)) expect(r).toMatchObject({ type: 'output', output: 'ran\n' });
    await expectFreshKernel(nb);
  });
});

describe('kernel death', () => {
  it('deep recursion is an error (RecursionError, RangeError), not a dead kernel', async () => {
    // Attack: unbounded recursion in Python and JavaScript. Containment: the interpreters'
    // own limits turn it into an ordinary error; the context is kept.
    const bystander = await Bystander.start(app);
    const nb = notebookId('recursion');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'keep', code: 'kept = 1' },
          { cellId: 'py', code: 'def f(n):\n    return f(n + 1)\nf(0)' },
          { cellId: 'js', language: 'javascript', code: 'function f(n) { return f(n + 1) }\nf(0)' },
          { cellId: 'after', code: 'kept' },
        ],
        stopOnError: false,
      },
      100,
    );
    expect(status.results.map((r) => r.type)).toEqual(['output', 'error', 'error', 'output']);
    expect(status.results[1]!.output).toMatch(/RecursionError: maximum recursion depth exceeded/);
    expect(status.results[2]!.output).toMatch(/RangeError: Maximum call stack size exceeded/);
    expect(status.results[3]!.output).toBe('1');
  });

  it('deep C recursion past a raised recursion limit crashes only that kernel: critical, never a hang', async () => {
    // Attack: sys.setrecursionlimit(10**6) removes the interpreter's guard; repr() of a list
    // nested 200000 deep recurses in C until the C stack overflows (SIGSEGV). Containment: the
    // kernel dies, the server reports critical (not a hang, not a timeout) and replaces it.
    const bystander = await Bystander.start(app);
    const nb = notebookId('crecursion');
    const started = performance.now();
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        'import sys\nsys.setrecursionlimit(10**6)\nx = []\nfor _ in range(200000):\n    x = [x]\nrepr(x)',
        { timeout: 10 },
      ),
      100,
    );
    expect(status.results[0]).toMatchObject({ type: 'critical', timedOut: false });
    expect(status.results[0]!.output).toMatch(/Segmentation fault|SIGSEGV|code 139/);
    expect(performance.now() - started).toBeLessThan(8000);
    await expectFreshKernel(nb);
  });

  it('os._exit, process.exit, process.abort and a segfault mid-cell are critical results with the reason', async () => {
    // Attack: end or crash the kernel from inside a cell, after printing something.
    // Containment: the exit is noticed at once, reported with its code or signal, the output
    // already sent is kept, and the next cell gets a fresh kernel.
    const bystander = await Bystander.start(app);
    const nb = notebookId('exits');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'py-exit', code: "import os, sys, time\nprint('before')\ntime.sleep(0.1)\nos._exit(7)" },
          { cellId: 'js-exit', language: 'javascript', code: "console.log('before'); process.exit(5)" },
          { cellId: 'js-abort', language: 'javascript', code: 'process.abort()' },
          { cellId: 'py-segv', code: 'import ctypes\nctypes.string_at(0)' },
        ],
        stopOnError: false,
      },
      100,
    );
    expect(status.results.map((r) => [r.cellId, r.type, r.timedOut])).toEqual([
      ['py-exit', 'critical', false],
      ['js-exit', 'critical', false],
      ['js-abort', 'critical', false],
      ['py-segv', 'critical', false],
    ]);
    expect(status.results[0]!.output).toMatch(/^before\n[^]*exited with code 7/);
    expect(status.results[1]!.output).toMatch(/^before\n[^]*exited with code 5/);
    expect(status.results[2]!.output).toMatch(/code 134|SIGABRT/);
    expect(status.results[3]!.output).toMatch(/Segmentation fault|SIGSEGV|code 139/);
    await expectFreshKernel(nb);
    await expectFreshKernel(nb, 'javascript');
  });
});

describe('bytes', () => {
  it('non-UTF-8 bytes, NUL, control and escape characters, lone surrogates pass through without breaking anything', async () => {
    // Attack: invalid UTF-8 through sys.stdout.buffer, through raw fd 1 and from JavaScript;
    // NUL, BEL, backspace, ANSI escapes (terminal injection for whoever displays the
    // output); lone surrogates in text and values; NUL bytes in the cell's code itself.
    // Containment: invalid bytes become U+FFFD, the rest is carried as data, the result
    // serialises as valid JSON, nothing crashes, and the next cell runs.
    const bystander = await Bystander.start(app);
    const nb = notebookId('bytes');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          {
            cellId: 'py',
            code: py`import os, sys
sys.stdout.buffer.write(b'bad:\xff\xfe\xc3(\x00:end\n'); sys.stdout.flush()
os.write(1, b'raw:\x80\x81\n')
print('ctl:\x00\x01\x07\x08\x1b[31mred\x1b[0m\x1b]0;title\x07\r|')
print('lone:\ud800|')
'\udcff'`,
          },
          {
            cellId: 'js',
            language: 'javascript',
            code: "process.stdout.write(Buffer.from([0x6a, 0xff, 0x00, 0x1b, 0x5b, 0x32, 0x4a, 0x0a])); require('fs').writeSync(1, Buffer.from([0xc3, 0x28, 0x0a])); '\\ud800'",
          },
          { cellId: 'nul-code', code: 'print(1)\0print(2)' },
          { cellId: 'after', code: "print('after')" },
        ],
        stopOnError: false,
      },
      100,
    );
    const [pyOut, js, nulCode, after] = status.results;
    expect(pyOut!.type).toBe('output');
    expect(pyOut!.output).toContain('bad:\ufffd\ufffd\ufffd(\u0000:end\n');
    expect(pyOut!.output).toContain('raw:\ufffd\ufffd\n');
    expect(pyOut!.output).toContain(
      'ctl:\u0000\u0001\u0007\u0008\u001b[31mred\u001b[0m\u001b]0;title\u0007\r|\n',
    );
    expect(pyOut!.output).toMatch(/lone:[\ud800\ufffd]\|/);
    expect(pyOut!.output).toMatch(/'\\udcff'$/);
    expect(js!.type).toBe('output');
    expect(js!.output).toContain('j\ufffd\u0000\u001b[2J\n');
    expect(js!.output).toContain('\ufffd(\n');
    expect(nulCode!.type).toBe('error');
    expect(nulCode!.output).toMatch(/null bytes|null character/);
    expect(after!.output).toBe('after\n');
    // The stored result reads back as JSON, byte for byte the same.
    const res = await app.inject({ method: 'GET', url: `/api/status/${status.submissionId}` });
    expect(res.statusCode).toBe(200);
    expect(res.json().results[0].output).toBe(pyOut!.output);
  });
});
