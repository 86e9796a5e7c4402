/**
 * The Bash kernel through a real sandbox: context that survives across cells, exit statuses,
 * output order and limits, interrupts that keep the shell, and commands that would otherwise hang
 * a cell (stdin readers, background jobs).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BashDriver } from '../../src/kernels/bash/bash-driver.ts';
import { Kernel, type ExecOptions, type ExecResult } from '../../src/kernels/kernel.ts';
import { BwrapSandbox } from '../../src/sandbox/bwrap-sandbox.ts';
import { silentLog, tempDir } from '../helpers.ts';

const sandbox = new BwrapSandbox({
  uidBase: 62200,
  uidCount: 4,
  instance: `test-bash-${process.pid}`,
  log: silentLog,
});
const driver = new BashDriver('/usr/bin/python3', '/bin/bash');
const root = tempDir();
const kernels: Kernel[] = [];
let notebooks = 0;

async function start(): Promise<Kernel> {
  const workspace = join(root, `nb${++notebooks}`);
  mkdirSync(workspace, { mode: 0o700 });
  const kernel = await Kernel.start(sandbox, driver, {
    notebookId: `bash-${notebooks}`,
    workspace,
    limits: {
      memoryBytes: 256 << 20,
      maxProcesses: 64,
      tmpBytes: 16 << 20,
      cpus: 1,
      openFiles: 256,
      fileBytes: 64 << 20,
    },
    network: false,
    log: silentLog,
    startTimeoutMs: 30_000,
  });
  kernels.push(kernel);
  return kernel;
}

function run(kernel: Kernel, code: string, options: Partial<ExecOptions> = {}): Promise<ExecResult> {
  return kernel.execute(code, {
    timeoutMs: 20_000,
    cpuTimeMs: 0,
    cpuCores: 1,
    graceMs: 2000,
    maxOutputBytes: 1 << 20,
    ...options,
  });
}

const stdout = (r: ExecResult) =>
  r.output.outputs.map((o) => (o.output_type === 'stream' && o.name === 'stdout' ? o.text : '')).join('');
/** Streams in order, consecutive chunks of one stream merged: `stdout:a\n`, `stderr:b\n`. */
const streams = (r: ExecResult) =>
  r.output.outputs.map((o) => (o.output_type === 'stream' ? `${o.name}:${o.text}` : o.output_type));

function expectOk(r: ExecResult): void {
  expect(r.outcome).toMatchObject({ status: 'ok', value: null });
}

let kernel: Kernel;
beforeAll(async () => {
  await sandbox.init();
  kernel = await start();
}, 60_000);
afterEach(() => {
  // A test that left the shared kernel dead must not break the next ones.
  if (kernel.state === 'dead') return start().then((k) => void (kernel = k));
});
afterAll(async () => {
  await Promise.all(kernels.map((k) => k.kill()));
  await sandbox.close();
});

describe('bash kernel', () => {
  it('keeps variables, functions, aliases and the working directory across cells', async () => {
    expectOk(await run(kernel, 'x=1; declare -A seen=([a]=1)\nmkdir -p sub/dir'));
    expectOk(await run(kernel, 'x=$((x + 41)); greet() { echo "hello $1 ($x)"; }\nalias hi="echo hi"'));
    expectOk(await run(kernel, 'cd sub/dir'));
    const r = await run(kernel, 'greet world\nhi\npwd\necho "${seen[a]}"');
    expectOk(r);
    expect(stdout(r)).toBe('hello world (42)\nhi\n/workspace/sub/dir\n1\n');
    expectOk(await run(kernel, 'cd /workspace'));
  });

  it("reports a non-zero status of the cell's last command as an error, and keeps $?", async () => {
    const r = await run(kernel, 'echo before\nfalse');
    expect(r.outcome).toMatchObject({
      status: 'error',
      ename: 'ExitStatus',
      evalue: 'exit status 1',
      interrupted: false,
    });
    expect(stdout(r)).toBe('before\n');
    const status = await run(kernel, 'echo "previous: $?"');
    expect(stdout(status)).toBe('previous: 1\n');
    expectOk(await run(kernel, 'false; true'));
    expect(await run(kernel, 'sh -c "exit 7"')).toMatchObject({ outcome: { evalue: 'exit status 7' } });
    const missing = await run(kernel, 'no-such-command');
    expect(missing.outcome).toMatchObject({ status: 'error', evalue: 'exit status 127' });
    expect(streams(missing)).toEqual(['stderr:bash: no-such-command: command not found\n']);
  });

  it('reports syntax errors and keeps running', async () => {
    const r = await run(kernel, 'echo first\nif then');
    expect(r.outcome).toMatchObject({ status: 'error', evalue: 'exit status 2' });
    expect(streams(r)).toEqual([
      'stdout:first\n',
      "stderr:bash: syntax error near unexpected token `then'\n",
    ]);
    expectOk(await run(kernel, 'true'));
  });

  it('streams stdout and stderr in the order they were written', async () => {
    const r = await run(
      kernel,
      'echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; echo out2; sleep 0.05; ls /nope; sleep 0.05; printf "no newline"',
    );
    expect(streams(r)).toEqual([
      'stdout:out1\n',
      'stderr:err1\n',
      'stdout:out2\n',
      "stderr:ls: cannot access '/nope': No such file or directory\n",
      'stdout:no newline',
    ]);
  });

  it('sends output while the cell runs', async () => {
    const seen: number[] = [];
    const started = performance.now();
    await run(kernel, 'echo one; sleep 0.5; echo two', {
      onOutput: () => void seen.push(performance.now() - started),
    });
    expect(seen).toHaveLength(2);
    expect(seen[1]! - seen[0]!).toBeGreaterThan(300);
  });

  it('gives commands that read stdin an immediate EOF', async () => {
    const r = await run(kernel, 'cat; read -r line; echo "read: $? [$line]"', { timeoutMs: 5000 });
    expectOk(r);
    expect(stdout(r)).toBe('read: 1 []\n');
    expect(r.durationMs).toBeLessThan(2000);
  });

  it('does not wait for background jobs, nor pass them its channels', async () => {
    const r = await run(kernel, 'sleep 1000 & echo "job $!"', { timeoutMs: 5000 });
    expectOk(r);
    expect(r.durationMs).toBeLessThan(2000);
    // As at a prompt, bash announces the job on stderr.
    expect(r.output.outputs).toContainEqual({
      output_type: 'stream',
      name: 'stderr',
      text: expect.stringMatching(/^\[1\] \d+\n$/),
    });
    const pid = stdout(r).trim().split(' ')[1];
    // The job holds the cell's stdout and stderr pipes, /dev/null as stdin and nothing else.
    const fds = await run(kernel, `ls -l /proc/${pid}/fd | awk 'NR > 1 { print $9, $11 }'; kill ${pid}`);
    expectOk(fds);
    expect(stdout(fds)).toMatch(/^0 \/dev\/null\n1 pipe:\[\d+\]\n2 pipe:\[\d+\]\n$/);
  });

  it('interrupts a foreground command, skips the rest of the cell and keeps the shell', async () => {
    expectOk(await run(kernel, 'kept=yes'));
    const pending = run(kernel, 'echo start; sleep 1000; echo not-reached');
    await new Promise((resolve) => setTimeout(resolve, 300));
    kernel.interrupt();
    const r = await pending;
    expect(r.outcome).toMatchObject({ status: 'error', ename: 'Interrupted', interrupted: true });
    expect(stdout(r)).toBe('start\n');
    expect(r.durationMs).toBeLessThan(3000);
    expect(stdout(await run(kernel, 'echo "$kept"'))).toBe('yes\n');
  });

  it('interrupts a busy loop of the shell itself', async () => {
    const pending = run(kernel, 'n=0; while :; do n=$((n + 1)); done; echo not-reached');
    await new Promise((resolve) => setTimeout(resolve, 300));
    kernel.interrupt();
    const r = await pending;
    expect(r.outcome).toMatchObject({ status: 'error', interrupted: true });
    expect(stdout(r)).toBe('');
    const after = await run(kernel, '[ "$n" -gt 0 ] && echo counted');
    expect(stdout(after)).toBe('counted\n');
  });

  it('interrupts a cell however soon after its start the interrupt comes', async () => {
    // 0 ms: the request overtakes the cell; then while bash reads the cell's line, forks `sleep`
    // (a SIGINT then is lost in the child, and the driver sends another) or runs it.
    for (const delayMs of [0, 1, 2, 5, 10]) {
      const pending = run(kernel, 'sleep 1000');
      if (delayMs === 0) kernel.interrupt();
      else setTimeout(() => kernel.interrupt(), delayMs);
      const r = await pending;
      expect(r.outcome).toMatchObject({ status: 'error', interrupted: true });
      expect(r.durationMs).toBeLessThan(1500);
      expect(stdout(await run(kernel, 'echo ok'))).toBe('ok\n');
    }
  });

  // The memory cgroup needs root; its OOM killer picks the biggest process, not the shell.
  it.runIf(process.getuid?.() === 0)('keeps the shell when a command runs out of memory', async () => {
    expectOk(await run(kernel, 'kept=yes'));
    const r = await run(kernel, 'python3 -c "x = bytearray(400 << 20)"');
    expect(r.outcome).toMatchObject({
      status: 'error',
      ename: 'ExitStatus',
      evalue: 'exit status 137 (SIGKILL)',
    });
    expect(stdout(await run(kernel, 'echo "$kept"'))).toBe('yes\n');
  });

  it('stops a cell at its wall-clock limit and keeps the context', async () => {
    expectOk(await run(kernel, 'still=here'));
    const r = await run(kernel, 'sleep 1000', { timeoutMs: 300 });
    expect(r.limit).toBe('timeout');
    expect(r.outcome).toMatchObject({ status: 'error', interrupted: true });
    expect(r.durationMs).toBeLessThan(2000);
    expect(stdout(await run(kernel, 'echo $still'))).toBe('here\n');
  });

  it('caps a flood of output at maxOutputBytes and counts the rest', async () => {
    const max = 1 << 20;
    const r = await run(kernel, 'yes | head -c 50M; echo done >&2', { maxOutputBytes: max });
    expectOk(r);
    expect(Buffer.byteLength(stdout(r))).toBe(max);
    expect(stdout(r).slice(0, 6)).toBe('y\ny\ny\n');
    expect(r.output.droppedBytes).toBe(50 * 1048576 + 'done\n'.length - max);
    expectOk(await run(kernel, 'true'));
  });

  it('ends the kernel when the shell exits, after saying so', async () => {
    const own = await start();
    const r = await run(own, 'echo bye; exit 3');
    expect(r.outcome).toMatchObject({
      status: 'error',
      ename: 'ShellExited',
      evalue: expect.stringContaining('exited with status 3'),
    });
    expect(stdout(r)).toBe('bye\n');
    expect((await own.exited).code).toBe(0);
  });

  it('ends the kernel when the shell is killed between cells', async () => {
    const own = await start();
    expectOk(await run(own, '(sleep 0.2; kill -KILL $$) &'));
    expect((await own.exited).code).toBe(1);
    expect(own.state).toBe('dead');
  });
});
