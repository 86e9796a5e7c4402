/**
 * The Java kernel (JShell in one JVM) through the real Kernel and a real BwrapSandbox, against
 * every JDK on the machine.
 */
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureJavaDriver, findJdks, jdkExternalFiles } from '../../src/kernels/java/build.ts';
import { JavaDriver } from '../../src/kernels/java/java-driver.ts';
import { Kernel, type ExecOptions, type ExecResult } from '../../src/kernels/kernel.ts';
import { BwrapSandbox } from '../../src/sandbox/bwrap-sandbox.ts';
import { silentLog, tempDir } from '../helpers.ts';

const jdks = await findJdks();
const sandbox = new BwrapSandbox({
  uidBase: 62100,
  uidCount: 4,
  instance: `test-java-${process.pid}`,
  log: silentLog,
});
// Not under /tmp: the sandbox's private /tmp would hide the bind. Searchable by the pool uids,
// as ensureJavaDriver checks; it creates the rest 0755.
const testRoot = mkdtempSync('/var/tmp/runcell-java-test-');
chmodSync(testRoot, 0o711);
const outDir = join(testRoot, 'java');
const limits = {
  memoryBytes: 512 << 20,
  maxProcesses: 64,
  tmpBytes: 64 << 20,
  cpus: 1,
  openFiles: 1024,
  fileBytes: 64 << 20,
};
const stream = (r: ExecResult, name: 'stdout' | 'stderr') =>
  r.output.outputs.map((o) => (o.output_type === 'stream' && o.name === name ? o.text : '')).join('');
const cell: ExecOptions = {
  timeoutMs: 20_000,
  cpuTimeMs: 0,
  cpuCores: 1,
  graceMs: 5_000,
  maxOutputBytes: 1 << 20,
};

beforeAll(() => sandbox.init());
afterAll(async () => {
  await sandbox.close();
  rmSync(testRoot, { recursive: true, force: true });
});

describe('findJdks', () => {
  it('finds each JDK with JShell once, aliases resolved', () => {
    expect(jdks.length).toBeGreaterThan(0);
    const homes = jdks.map((j) => j.home);
    expect(new Set(homes).size).toBe(homes.length);
    for (const jdk of jdks) expect(jdk.version).toMatch(/^\d+(\.\d+)*$/);
  });
});

describe('ensureJavaDriver', () => {
  it('compiles once per JDK version and source, into a directory the sandbox uids can read', async () => {
    const first = await ensureJavaDriver(jdks[0]!.home, outDir);
    expect(await ensureJavaDriver(jdks[0]!.home, outDir)).toBe(first);
    expect(first).toContain(jdks[0]!.version);
    expect(statSync(first).mode & 0o777).toBe(0o755);
    expect(statSync(join(first, 'RuncellJShell.class')).mode & 0o777).toBe(0o644);
  });

  it('binds only the files a JDK links outside /usr', () => {
    for (const jdk of jdks) {
      for (const file of jdkExternalFiles(jdk.home)) expect(file.startsWith('/usr/')).toBe(false);
    }
  });
});

describe.each(jdks)('Java kernel on JDK $version', (jdk) => {
  let kernel: Kernel;
  const run = (code: string, options: Partial<ExecOptions> = {}) =>
    kernel.execute(code, { ...cell, ...options });
  const ok = (r: ExecResult) => {
    expect(r.outcome).toMatchObject({ status: 'ok' });
    return r.outcome.status === 'ok' ? r.outcome.value : undefined;
  };
  const failed = (r: ExecResult) => {
    if (r.outcome.status !== 'error') throw new Error(`expected an error: ${JSON.stringify(r.outcome)}`);
    return r.outcome;
  };

  beforeAll(async () => {
    kernel = await Kernel.start(sandbox, new JavaDriver(jdk.home, outDir), {
      notebookId: `java-${jdk.version}`,
      workspace: join(tempDir(), 'ws'),
      limits,
      network: false,
      log: silentLog,
      startTimeoutMs: 60_000,
    });
  }, 90_000);
  afterAll(() => kernel?.kill());

  it('keeps declarations, and lets a cell redefine them', async () => {
    ok(await run('int x = 1;'));
    ok(await run('int x = 2;'));
    expect(ok(await run('x'))).toBe('2');
  });

  it('keeps methods and imports from one cell to the next', async () => {
    ok(await run('import java.time.LocalDate;\nint twice(int n) { return 2 * n; }'));
    expect(ok(await run('twice(21)'))).toBe('42');
    expect(ok(await run('LocalDate.of(2024, 2, 29).plusDays(1)'))).toBe('2024-03-01');
  });

  it('shows the trailing expression, not declarations or statements', async () => {
    expect(ok(await run('int y = 5;'))).toBeNull();
    expect(ok(await run('int z = 3;\nz * 2'))).toBe('6');
    expect(ok(await run('"a\\tb" + "😀"'))).toBe('"a\\tb😀"');
    expect(ok(await run('System.out.println("x")'))).toBeNull();
  });

  it('streams System.out and System.err of the cell, UTF-8 intact', async () => {
    const r = await run('System.out.println("héllo 😀");\nSystem.err.println("oops");\n1');
    expect(ok(r)).toBe('1');
    expect(stream(r, 'stdout')).toBe('héllo 😀\n');
    expect(stream(r, 'stderr')).toBe('oops\n');
  });

  it('reports a compile error with its line', async () => {
    const error = failed(await run('int a = 1;\nString s = a;\nint b = 2;'));
    expect(error.ename).toBe('CompilationError');
    expect(error.evalue).toMatch(/incompatible types.*line 2/);
    expect(error.traceback.join('\n')).toContain('String s = a;');
    // Nothing after the error ran: b does not exist.
    expect(failed(await run('b')).ename).toBe('CompilationError');
  });

  it("reports an exception with a stack trace through the user's method", async () => {
    ok(await run('void explode(String why) {\n  throw new IllegalStateException(why);\n}'));
    const error = failed(await run('int n = 0;\nexplode("boom")'));
    expect(error).toMatchObject({ ename: 'java.lang.IllegalStateException', evalue: 'boom' });
    expect(error.traceback[0]).toBe('java.lang.IllegalStateException: boom');
    expect(error.traceback.some((l) => /at explode\(<cell-\d+>:2\)/.test(l))).toBe(true);
    expect(error.traceback.join('\n')).not.toMatch(/jdk\.jshell|jdk\.internal|reflect/);
  });

  it('stops a busy loop or a sleep on interrupt and keeps the context', async () => {
    ok(await run('int kept = 5;'));
    for (const code of ['while (true) {}', 'Thread.sleep(100_000);']) {
      const running = run(code);
      await new Promise((r) => setTimeout(r, 500));
      kernel.interrupt();
      const error = failed(await running);
      expect(error.interrupted).toBe(true);
      expect(ok(await run('kept'))).toBe('5');
    }
  });

  it('interrupts a cell at its wall-clock timeout', async () => {
    const r = await run('long spins = 0;\nwhile (true) spins++;', { timeoutMs: 700 });
    expect(r.limit).toBe('timeout');
    expect(failed(r).interrupted).toBe(true);
    expect(kernel.state).toBe('idle');
  });

  it('drops output past maxOutputBytes and counts it', async () => {
    const r = await run('for (int i = 0; i < 10_000; i++) System.out.println("0123456789");', {
      maxOutputBytes: 1000,
    });
    ok(r);
    expect(stream(r, 'stdout').length).toBe(1000);
    expect(r.output.droppedBytes).toBe(110_000 - 1000);
  });

  it('turns filling the heap into an OutOfMemoryError, and survives', async () => {
    const error = failed(
      await run(
        'long[][] hog = new long[1000][];\nfor (int i = 0; i < 1000; i++) hog[i] = new long[10_000_000];',
      ),
    );
    expect(error.ename).toBe('java.lang.OutOfMemoryError');
    // The heap is still full of hog's arrays: the next cell can still compile and free them.
    ok(await run('hog = null;'));
    expect(ok(await run('kept + 1'))).toBe('6');
    expect(kernel.state).toBe('idle');
  });
});
