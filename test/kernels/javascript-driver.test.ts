import { describe, it, expect, afterEach } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  encodeFrame,
  FrameDecoder,
  type KernelEvent,
  type KernelRequest,
} from '../../src/kernels/protocol.ts';

const source = readFileSync(new URL('../../src/kernels/javascript/driver.mjs', import.meta.url), 'utf8');

type ResultEvent = Extract<KernelEvent, { type: 'result' }>;
type StreamEvent = Extract<KernelEvent, { type: 'stream' }>;

interface CellRun {
  result: ResultEvent;
  streams: StreamEvent[];
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved in the order the frames arrived. */
  output: string;
}

class Kernel {
  readonly proc: ChildProcess;
  readonly events: KernelEvent[] = [];
  readonly fd1: string[] = [];
  readonly fd2: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #decoder = new FrameDecoder();
  #listeners = new Set<() => void>();
  #nextId = 1;
  readonly dir: string;

  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'runcell-js-driver-'));
    this.proc = spawn(process.execPath, ['--input-type=module', '-e', source], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
      env: { PATH: '/usr/bin:/bin' },
      cwd: this.dir,
    });
    this.proc.stdout!.on('data', (chunk: Buffer) => this.fd1.push(chunk.toString()));
    this.proc.stderr!.on('data', (chunk: Buffer) => this.fd2.push(chunk.toString()));
    (this.proc.stdio[4] as Readable).on('data', (chunk: Buffer) => {
      for (const message of this.#decoder.push(chunk)) this.events.push(message as KernelEvent);
      for (const listener of this.#listeners) listener();
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
  }

  send(request: KernelRequest): void {
    (this.proc.stdio[3] as Writable).write(encodeFrame(request));
  }

  /** Resolves with the first event (from index `from`) matching `match`. */
  waitFor<T extends KernelEvent>(
    match: (event: KernelEvent) => event is T,
    timeoutMs = 10_000,
    from = 0,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events.slice(from).find(match);
        if (found === undefined) return false;
        cleanup();
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out; events so far: ${JSON.stringify(this.events.slice(from))}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.#listeners.delete(onEvent);
      };
      const onEvent = () => void check();
      this.#listeners.add(onEvent);
      check();
    });
  }

  ready(): Promise<Extract<KernelEvent, { type: 'ready' }>> {
    return this.waitFor((e): e is Extract<KernelEvent, { type: 'ready' }> => e.type === 'ready');
  }

  /** Sends an execute request without waiting; returns its id. */
  start(code: string, maxOutputBytes = 1_000_000): number {
    const id = this.#nextId++;
    this.send({ type: 'execute', id, code, maxOutputBytes });
    return id;
  }

  async finish(id: number, timeoutMs = 10_000): Promise<CellRun> {
    const result = await this.waitFor((e): e is ResultEvent => e.type === 'result' && e.id === id, timeoutMs);
    const streams = this.events.filter((e): e is StreamEvent => e.type === 'stream' && e.id === id);
    const text = (name?: string) =>
      streams
        .filter((s) => name === undefined || s.name === name)
        .map((s) => s.text)
        .join('');
    return { result, streams, stdout: text('stdout'), stderr: text('stderr'), output: text() };
  }

  run(code: string, maxOutputBytes?: number): Promise<CellRun> {
    return this.finish(this.start(code, maxOutputBytes));
  }

  /** Runs a cell that must succeed and returns its value text. */
  async value(code: string): Promise<string | null> {
    const { result } = await this.run(code);
    if (result.status !== 'ok') throw new Error(`cell failed: ${JSON.stringify(result)}`);
    return result.value;
  }

  close(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const kernels: Kernel[] = [];
async function startKernel(): Promise<Kernel> {
  const kernel = new Kernel();
  kernels.push(kernel);
  await kernel.ready();
  return kernel;
}

afterEach(() => {
  for (const kernel of kernels.splice(0)) kernel.close();
});

function expectError(result: ResultEvent): Extract<ResultEvent, { status: 'error' }> {
  expect(result.status).toBe('error');
  if (result.status !== 'error') throw new Error('unreachable');
  return result;
}

describe('javascript kernel driver', () => {
  it('announces itself as ready with the Node version', async () => {
    const kernel = new Kernel();
    kernels.push(kernel);
    const ready = await kernel.ready();
    expect(ready).toEqual({ type: 'ready', language: 'javascript', version: process.versions.node });
    expect(kernel.events).toHaveLength(1);
  });

  it('lets a later cell re-declare a top-level const', async () => {
    const kernel = await startKernel();
    expect(await kernel.value(`const name = 'Bob'`)).toBeNull();
    expect(await kernel.value('name')).toBe("'Bob'");
    expect(await kernel.value(`const name = 'Alice'`)).toBeNull();
    expect(await kernel.value('name')).toBe("'Alice'");
  });

  it('runs the Pennant example across cells', async () => {
    const kernel = await startKernel();
    await kernel.value(`const name = 'Bob'`);
    await kernel.value('const age = 30');
    const run = await kernel.run(`console.log(name, ' is ', age, ' years old')`);
    expect(run.result).toEqual({ type: 'result', id: run.result.id, status: 'ok', value: null });
    expect(run.stdout).toBe('Bob  is  30  years old\n');
    expect(run.stderr).toBe('');
  });

  it('lets a later cell re-declare a class and let', async () => {
    const kernel = await startKernel();
    await kernel.value(`class Greeter { hello() { return 'hi' } }`);
    await kernel.value('let count = 1');
    await kernel.value(`class Greeter { hello() { return 'hello' } }`);
    await kernel.value('let count = 2');
    expect(await kernel.value('new Greeter().hello() + count')).toBe("'hello2'");
  });

  it('supports top-level await', async () => {
    const kernel = await startKernel();
    const started = Date.now();
    expect(await kernel.value('await new Promise((r) => setTimeout(() => r(42), 100))')).toBe('42');
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    await kernel.value(`const data = await Promise.resolve({ ok: true })`);
    expect(await kernel.value('data.ok')).toBe('true');
  });

  it('shows the trailing value as the Node REPL does', async () => {
    const kernel = await startKernel();
    expect(await kernel.value('1 + 1')).toBe('2');
    expect(await kernel.value(`'Alice'`)).toBe("'Alice'");
    expect(await kernel.value('({ a: 1, b: [1, 2], c: { d: "x" } })')).toBe(
      "{ a: 1, b: [ 1, 2 ], c: { d: 'x' } }",
    );
    expect(await kernel.value('undefined')).toBeNull();
    expect(await kernel.value('let nothing')).toBeNull();
    expect(await kernel.value('null')).toBe('null');
    expect(await kernel.value('10n ** 20n')).toBe('100000000000000000000n');
    expect(await kernel.value('-0')).toBe('-0');
    expect(await kernel.value('NaN')).toBe('NaN');
    expect(await kernel.value('new Map([[1, 2]])')).toBe('Map(1) { 1 => 2 }');
    expect(await kernel.value('function f() {}; f')).toBe('[Function: f]');
    expect(await kernel.value(`Symbol('s')`)).toBe('Symbol(s)');
    expect(await kernel.value('Promise.resolve(5)')).toBe('Promise { 5 }');
  });

  it('keeps the order of console.log and console.error output', async () => {
    const kernel = await startKernel();
    const run = await kernel.run(`console.log('one'); console.error('two'); console.log('three'); 'done'`);
    expect(run.result).toMatchObject({ status: 'ok', value: "'done'" });
    expect(run.streams.map((s) => [s.name, s.text])).toEqual([
      ['stdout', 'one\n'],
      ['stderr', 'two\n'],
      ['stdout', 'three\n'],
    ]);
    expect(kernel.fd1.join('')).toBe('');
  });

  it('streams output produced while a cell awaits, attributed to that cell', async () => {
    const kernel = await startKernel();
    const run = await kernel.run(
      `for (let i = 0; i < 3; i++) { console.log('tick', i); await new Promise((r) => setTimeout(r, 20)); }`,
    );
    expect(run.result).toMatchObject({ status: 'ok', value: null });
    expect(run.stdout).toBe('tick 0\ntick 1\ntick 2\n');
  });

  it('reports a thrown TypeError with user stack frames only', async () => {
    const kernel = await startKernel();
    await kernel.value(`function explode() { throw new TypeError('boom') }`);
    const error = expectError((await kernel.run('1;\nexplode()')).result);
    expect(error.ename).toBe('TypeError');
    expect(error.evalue).toBe('boom');
    expect(error.interrupted).toBeUndefined();
    expect(error.traceback[0]).toBe('TypeError: boom');
    expect(error.traceback[1]).toMatch(/^\s+at explode \(<anonymous>:1:\d+\)$/);
    expect(error.traceback[2]).toMatch(/^\s+at <anonymous>:2:1$/);
    expect(error.traceback).toHaveLength(3);
    for (const line of error.traceback) {
      expect(line).not.toMatch(/node:|\[eval\d*\]|file:/);
    }
    const direct = expectError((await kernel.run('null.x')).result);
    expect(direct.ename).toBe('TypeError');
    expect(direct.traceback).toEqual([`TypeError: ${direct.evalue}`, '    at <anonymous>:1:6']);
  });

  it('reports thrown non-Error values by their type', async () => {
    const kernel = await startKernel();
    const string = expectError((await kernel.run(`throw 'oops'`)).result);
    expect(string).toMatchObject({ ename: 'string', evalue: 'oops', traceback: ["Uncaught 'oops'"] });
    const number = expectError((await kernel.run('throw 5')).result);
    expect(number).toMatchObject({ ename: 'number', evalue: '5' });
    const plain = expectError((await kernel.run('throw { code: 1 }')).result);
    expect(plain).toMatchObject({ ename: 'Object', evalue: '{ code: 1 }' });
  });

  it('reports a syntax error and stays usable', async () => {
    const kernel = await startKernel();
    await kernel.value('const before = 1');
    const error = expectError((await kernel.run('const x = ;')).result);
    expect(error.ename).toBe('SyntaxError');
    expect(error.evalue).toBe("Unexpected token ';'");
    expect(error.traceback).toEqual(["SyntaxError: Unexpected token ';'"]);
    expect(await kernel.value('before + 1')).toBe('2');
  });

  it('interrupts a synchronous infinite loop and keeps earlier variables', async () => {
    const kernel = await startKernel();
    await kernel.value('const kept = 41');
    const id = kernel.start('while (true) {}');
    await new Promise((r) => setTimeout(r, 200));
    expect(kernel.events.some((e) => e.type === 'result' && e.id === id)).toBe(false);
    const sent = Date.now();
    kernel.send({ type: 'interrupt', id });
    const error = expectError((await kernel.finish(id, 5_000)).result);
    expect(Date.now() - sent).toBeLessThan(1_000);
    expect(error.interrupted).toBe(true);
    expect(error.ename).toBe('Interrupted');
    expect(error.evalue).toMatch(/interrupted/);
    expect(await kernel.value('kept + 1')).toBe('42');
  });

  it('interrupts a cell that awaits a long promise', async () => {
    const kernel = await startKernel();
    await kernel.value('let counter = 1');
    const id = kernel.start(`await new Promise((r) => setTimeout(r, 60_000)); counter = 100`);
    await new Promise((r) => setTimeout(r, 200));
    const sent = Date.now();
    kernel.send({ type: 'interrupt', id });
    const error = expectError((await kernel.finish(id, 5_000)).result);
    expect(Date.now() - sent).toBeLessThan(1_000);
    expect(error.interrupted).toBe(true);
    expect(await kernel.value('counter')).toBe('1');
  });

  it('interrupts a loop that starts after an await', async () => {
    const kernel = await startKernel();
    const id = kernel.start(`await new Promise((r) => setTimeout(r, 10)); while (true) {}`);
    await new Promise((r) => setTimeout(r, 200));
    kernel.send({ type: 'interrupt', id });
    const error = expectError((await kernel.finish(id, 5_000)).result);
    expect(error.interrupted).toBe(true);
    expect(await kernel.value('1 + 2')).toBe('3');
  });

  it('ignores an interrupt for a cell that is not running', async () => {
    const kernel = await startKernel();
    const done = kernel.start('1');
    await kernel.finish(done);
    const id = kernel.start('await new Promise((r) => setTimeout(r, 300)); 7');
    kernel.send({ type: 'interrupt', id: done });
    kernel.send({ type: 'interrupt', id: 999 });
    expect((await kernel.finish(id)).result).toMatchObject({ status: 'ok', value: '7' });
    expect(kernel.events.filter((e) => e.type === 'result')).toHaveLength(2);
  });

  it('caps output per cell and reports the dropped bytes', async () => {
    const kernel = await startKernel();
    const run = await kernel.run(
      `for (let i = 0; i < 1000; i++) console.log('line ' + i + ' ' + 'é'.repeat(20))`,
      1000,
    );
    const sent = Buffer.byteLength(run.output);
    expect(sent).toBeLessThanOrEqual(1000);
    expect(sent).toBeGreaterThan(900);
    expect(run.output).not.toContain('\ufffd');
    expect(run.result.status).toBe('ok');
    const total = Array.from({ length: 1000 }, (_, i) =>
      Buffer.byteLength(`line ${i} ${'é'.repeat(20)}\n`),
    ).reduce((a, b) => a + b);
    expect(run.result.dropped).toBe(total - sent);
    // The cap is per cell: the next cell prints again and drops nothing.
    const next = await kernel.run(`console.log('still here'); 1`, 1000);
    expect(next.stdout).toBe('still here\n');
    expect(next.result).toEqual({ type: 'result', id: next.result.id, status: 'ok', value: '1' });
  });

  it('offers require rooted at the workspace', async () => {
    const kernel = await startKernel();
    expect(await kernel.value(`require('node:path').join('a', 'b')`)).toBe("'a/b'");
    await kernel.value(`require('node:fs').writeFileSync('helper.cjs', 'module.exports = { three: 3 }')`);
    expect(await kernel.value(`require('./helper.cjs').three`)).toBe('3');
    expect(await kernel.value('process.cwd()')).toBe(`'${kernel.dir}'`);
  });

  it('reports an error thrown later by a timer on stderr and keeps running', async () => {
    const kernel = await startKernel();
    const run = await kernel.run(
      `setTimeout(() => { throw new Error('late') }, 10); await new Promise((r) => setTimeout(r, 100)); 'alive'`,
    );
    expect(run.result).toMatchObject({ status: 'ok', value: "'alive'" });
    expect(run.stderr).toMatch(/^Uncaught Error: late\n\s+at /);
    expect(await kernel.value('2 * 2')).toBe('4');
  });

  it('exits when the request channel closes, without inspector noise', async () => {
    const kernel = await startKernel();
    await kernel.value('1');
    (kernel.proc.stdio[3] as Writable).end();
    expect(await kernel.exited).toEqual({ code: 0, signal: null });
    expect(kernel.fd2.join('')).toBe('');
  });

  it('exits when the request channel closes while a cell is stuck', async () => {
    const kernel = await startKernel();
    kernel.start('while (true) {}');
    await new Promise((r) => setTimeout(r, 100));
    const closed = Date.now();
    (kernel.proc.stdio[3] as Writable).end();
    await kernel.exited;
    expect(Date.now() - closed).toBeLessThan(3_000);
  });
});
