/**
 * Exploit suite: resource exhaustion. Each test is an attack a hostile cell can mount against
 * the machine's processes, memory, CPU, disk, descriptors or the server's own memory, and what
 * containment looks like. A bystander notebook must keep its context and answer promptly
 * throughout (see helpers.ts).
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attack,
  Bystander,
  closeAndCheck,
  hostProcesses,
  LIMITS,
  notebookId,
  py,
  reset,
  run,
  runJson,
  startSecurityApp,
  underAttack,
  type SecurityApp,
} from './helpers.ts';

let sa: SecurityApp;
let app: FastifyInstance;
// A small workspace filesystem per notebook, so filling it is quick.
const WORKSPACE_MB = 32;
const WORKSPACE_INODES = 1024;
beforeAll(async () => {
  sa = await startSecurityApp({
    workspaceMb: WORKSPACE_MB,
    workspaceInodes: WORKSPACE_INODES,
  });
  app = sa.app;
});
afterAll(() => closeAndCheck(sa));

/** Live host processes per pool uid of this file's app. */
function processesByUid(): Map<number, number> {
  const counts = new Map<number, number>();
  for (const p of hostProcesses()) {
    if (p.uid < sa.uidBase || p.uid >= sa.uidBase + sa.uidCount || p.stat.startsWith('Z')) continue;
    counts.set(p.uid, (counts.get(p.uid) ?? 0) + 1);
  }
  return counts;
}

const OUTPUT_SLACK = 200; // the truncation marker
const CAP = LIMITS.maxOutputBytes;

describe('processes', () => {
  it('contains a Python fork bomb in the pids cgroup, and reset ends all of it', async () => {
    // Attack: every process forks forever, retrying when fork fails, so the bomb keeps every
    // slot it can get and outlives the cell (only the kernel itself gets the interrupt).
    // Containment: the pids cgroup (kernelMaxProcesses) caps the tree, the cell ends at its
    // timeout like any other, and reset kills every member, however many.
    const bystander = await Bystander.start(app);
    const before = processesByUid();
    const nb = notebookId('forkbomb');
    await run(app, nb, ['kept = 1']);
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        py`import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.005)`,
        { timeout: 1 },
      ),
    );
    const result = status.results[0]!;
    expect(result.timedOut).toBe(true);
    expect(result.type, result.output).toBe('error');
    expect(result.output).toMatch(/KeyboardInterrupt/);
    // Never more processes than the limit (threads count too, so fewer processes than that).
    const bomb = [...processesByUid()].filter(([uid]) => !before.has(uid));
    const biggest = Math.max(...bomb.map(([, n]) => n));
    expect(biggest).toBeGreaterThan(LIMITS.kernelMaxProcesses / 2);
    expect(biggest).toBeLessThanOrEqual(LIMITS.kernelMaxProcesses);
    // The kernel, interrupted, kept its context even with the bomb still going.
    expect((await run(app, nb, ['kept'], { timeout: 5 })).results[0]!.output).toBe('1');
    const bombUid = bomb.find(([, n]) => n === biggest)![0];
    await reset(app, nb);
    expect(processesByUid().get(bombUid) ?? 0).toBe(0);
    await bystander.check('after the reset');
  });

  it('stops a Python subprocess loop at the process limit with EAGAIN', async () => {
    // Attack: start /bin/sleep children until something gives. Containment: fork fails with
    // EAGAIN (BlockingIOError) below kernelMaxProcesses; the kernel itself survives.
    const bystander = await Bystander.start(app);
    const nb = notebookId('spawnbomb');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        py`import json, subprocess
procs, err = [], None
try:
    for _ in range(500):
        procs.append(subprocess.Popen(['/bin/sleep', '30']))
except OSError as e:
    err = [type(e).__name__, e.errno]
for p in procs:
    p.kill()
for p in procs:
    p.wait()
print(json.dumps({'started': len(procs), 'error': err}))`,
      ),
      100,
    );
    const result = status.results[0]!;
    expect(result.type).toBe('output');
    const data = JSON.parse(result.output);
    expect(data.error).toEqual(['BlockingIOError', 11]);
    expect(data.started).toBeGreaterThan(10);
    expect(data.started).toBeLessThan(LIMITS.kernelMaxProcesses);
    expect((await run(app, nb, ['print("still here")'])).results[0]!.output).toBe('still here\n');
  });

  it('stops a JavaScript spawn loop at the process limit with EAGAIN', async () => {
    // Attack: child_process.spawn in a loop. Containment: spawn reports EAGAIN once the pids
    // cgroup is full; Node's own threads were already counted, so the kernel keeps working.
    const bystander = await Bystander.start(app);
    const nb = notebookId('jsspawn');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        `const { spawn } = require('child_process');
const kids = [], errors = new Set();
for (let i = 0; i < 300; i++) {
  try {
    const c = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
    c.on('error', (e) => errors.add(e.code));
    kids.push(c);
  } catch (e) { errors.add(e.code); }
}
await new Promise((r) => setTimeout(r, 200));
const alive = kids.filter((k) => k.pid !== undefined).length;
for (const k of kids) k.kill('SIGKILL');
console.log(JSON.stringify({ alive, errors: [...errors] }));`,
        { language: 'javascript' },
      ),
      100,
    );
    const result = status.results[0]!;
    expect(result.type).toBe('output');
    const data = JSON.parse(result.output);
    expect(data.errors).toEqual(['EAGAIN']);
    expect(data.alive).toBeGreaterThan(5);
    expect(data.alive).toBeLessThan(LIMITS.kernelMaxProcesses);
    expect((await run(app, nb, ['6 * 7'], { language: 'javascript' })).results[0]!.output).toBe('42');
  });

  it('stops a Python thread bomb with an error, not a dead kernel', async () => {
    // Attack: threads until the interpreter cannot start one more. Threads are tasks, so the
    // pids cgroup caps them too: "can't start new thread" is a RuntimeError in the cell.
    const bystander = await Bystander.start(app);
    const nb = notebookId('threads');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        py`import threading, time
ev = threading.Event()
threads = []
try:
    while True:
        t = threading.Thread(target=ev.wait, daemon=True); t.start(); threads.append(t)
finally:
    n = len(threads); ev.set()`,
      ),
      100,
    );
    const result = status.results[0]!;
    expect(result.type).toBe('error');
    expect(result.output).toMatch(/RuntimeError: can't start new thread/);
    const n = await run(app, nb, ['n']);
    expect(Number(n.results[0]!.output)).toBeLessThan(LIMITS.kernelMaxProcesses);
  });
});

describe('memory', () => {
  it('ends a growing Python allocation with MemoryError or an OOM kill, never more', async () => {
    // Attack: keep allocating and touching memory. Containment: the address-space cap turns a
    // big request into MemoryError; touched pages hit the memory cgroup and the OOM killer
    // ends the kernel (a critical result saying so). Either way nothing beyond the limit.
    const bystander = await Bystander.start(app);
    const nb = notebookId('membomb');
    const status = await underAttack(
      app,
      bystander,
      attack(nb, "hog = []\nwhile True:\n    hog.append(b'x' * (16 << 20))", { timeout: 10 }),
      100,
    );
    const result = status.results[0]!;
    if (result.type === 'error') expect(result.output).toMatch(/MemoryError/);
    else expect(result.output).toMatch(/out of memory \(limit 256 MiB\)/);
    expect(result.timedOut).toBe(false);
    expect((await run(app, nb, ['print("back")'])).results[0]!.output).toBe('back\n');
  });

  it('holds the memory limit across many processes (the address-space cap is per process)', async () => {
    // Attack: RLIMIT_AS is per process, so fork 8 children that each touch 64 MiB (512 MiB in
    // all) and hold it. Containment: the memory cgroup counts the whole tree: the OOM killer
    // ends children (or the kernel) until what is left fits in kernelMemoryMb.
    const bystander = await Bystander.start(app);
    const nb = notebookId('mem-many');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        py`import os, time, json
kids = []
r, w = os.pipe()
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        hold = b'x' * (64 << 20)
        os.write(w, b'.')  # holding it
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
os.close(w)
# Until every fork holds its 64 MiB or is dead (forks run at a lower priority: no fixed wait).
held, dead, deadline = 0, set(), time.time() + 20  # under load, niced forks are slow
while held + len(dead) < 8 and time.time() < deadline:
    import select
    if select.select([r], [], [], 0.05)[0]:
        held += len(os.read(r, 8))
    for pid in kids:
        if pid not in dead and os.waitpid(pid, os.WNOHANG)[0]:
            dead.add(pid)
rss = 0
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            # Proportional: pages the forks still share with the kernel count once, not per fork.
            for line in open(f'/proc/{p}/smaps_rollup'):
                if line.startswith('Pss_Anon:'):
                    rss += int(line.split()[1])
        except OSError:
            pass
oom = 0
for pid in kids:
    if pid in dead:
        oom += 1  # only the OOM killer ends a fork before its 30 s
    else:
        os.kill(pid, 9); os.waitpid(pid, 0)
print(json.dumps({'rssMb': rss >> 10, 'oomKilled': oom}))`,
        { timeout: 25 },
      ),
      300,
    );
    const result = status.results[0]!;
    if (result.type === 'critical') {
      expect(result.output).toMatch(/out of memory \(limit 256 MiB\)/);
    } else {
      expect(result.type).toBe('output');
      const { rssMb, oomKilled } = JSON.parse(result.output);
      expect(rssMb).toBeLessThan(LIMITS.kernelMemoryMb);
      expect(oomKilled).toBeGreaterThanOrEqual(4);
    }
  });

  it('reports an off-heap JavaScript allocation (Buffers) that hits the cgroup as out of memory', async () => {
    // Attack: Buffers live outside V8's heap, so --max-old-space-size does not stop them.
    // Containment: the memory cgroup kills the kernel; the result is critical and says why.
    const bystander = await Bystander.start(app);
    const nb = notebookId('js-buffers');
    const status = await underAttack(
      app,
      bystander,
      attack(nb, 'const hog = []; for (;;) hog.push(Buffer.alloc(16 << 20, 1));', {
        language: 'javascript',
        timeout: 10,
      }),
      100,
    );
    const result = status.results[0]!;
    expect(result.type).toBe('critical');
    expect(result.output).toMatch(/out of memory \(limit 256 MiB\)/);
    const after = await run(app, nb, ['1 + 1'], { language: 'javascript' });
    expect(after.results[0]).toMatchObject({ type: 'output', output: '2', contextLost: true });
  });
});

describe('CPU and the wall clock', () => {
  it('interrupts a Python busy loop at its timeout and keeps the context', async () => {
    // Attack: spin forever. Containment: the server's wall clock interrupts it
    // (KeyboardInterrupt) at the timeout; variables survive.
    const bystander = await Bystander.start(app);
    const nb = notebookId('busy');
    await run(app, nb, ['kept = "yes"']);
    const started = performance.now();
    const status = await underAttack(app, bystander, attack(nb, 'while True:\n    pass', { timeout: 1 }));
    expect(performance.now() - started).toBeLessThan(4000);
    expect(status.results[0]).toMatchObject({ type: 'error', timedOut: true });
    expect(status.results[0]!.output).toMatch(/KeyboardInterrupt/);
    expect((await run(app, nb, ['kept'])).results[0]!.output).toBe("'yes'");
  });

  it('kills a kernel stuck in C code that never sees the interrupt (catastrophic regex)', async () => {
    // Attack: an exponential regex runs inside the C matcher, which never checks for signals,
    // so KeyboardInterrupt cannot be raised. Containment: after interruptGraceMs the server
    // kills the cgroup: a critical, timed-out result, context reset.
    const bystander = await Bystander.start(app);
    const nb = notebookId('regex');
    const started = performance.now();
    const status = await underAttack(
      app,
      bystander,
      attack(nb, "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')", { timeout: 1 }),
    );
    expect(performance.now() - started).toBeLessThan(1000 + LIMITS.interruptGraceMs + 2500);
    expect(status.results[0]).toMatchObject({ type: 'critical', timedOut: true, contextLost: true });
    expect(status.results[0]!.output).toMatch(/did not stop when interrupted, so its kernel was killed/);
  });

  it('keeps the server and bystanders responsive while a notebook runs many busy processes', async () => {
    // Attack: 16 processes spinning on 2 cores, left running after the cell ends. Containment:
    // the kernel's CPU quota (kernelCpus, cpu cgroup) leaves the rest of the machine a core,
    // so the bystander still answers promptly; reset ends the spinners.
    const bystander = await Bystander.start(app);
    const nb = notebookId('cpuhog');
    const before = processesByUid();
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        py`import os, time
for _ in range(16):
    if os.fork() == 0:
        while True:
            pass
time.sleep(1.5)
print('spinning')`,
        { timeout: 5 },
      ),
      600,
    );
    expect(status.results[0]!.output).toBe('spinning\n');
    // Still spinning after the cell: check the bystander a few more times under load.
    for (let i = 0; i < 3; i++) await bystander.check(`under CPU load, round ${i}`);
    const hogUid = [...processesByUid()].find(([uid, n]) => n >= 16 && !before.has(uid))?.[0];
    expect(hogUid).toBeDefined();
    await reset(app, nb);
    expect(processesByUid().get(hogUid!) ?? 0).toBe(0);
  });

  it('interrupts a Python cell sleeping forever, and kills one that ignores SIGINT', async () => {
    // Attack 1: time.sleep(10**9). Attack 2: the cell sets SIGINT to SIG_IGN first, then
    // sleeps. Containment: the first ends with KeyboardInterrupt at the timeout; the second
    // ignores the interrupt and is killed after the grace period (critical).
    const bystander = await Bystander.start(app);
    const nb = notebookId('sleep');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'sleep', code: 'import time\ntime.sleep(10**9)' },
          {
            cellId: 'ignore',
            code: 'import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(10**9)',
          },
        ],
        timeout: 1,
        stopOnError: false,
      },
      200,
    );
    expect(status.results.map((r) => [r.type, r.timedOut])).toEqual([
      ['error', true],
      ['critical', true],
    ]);
    expect(status.results[0]!.output).toMatch(/KeyboardInterrupt/);
  });

  it('interrupts JavaScript waiting forever: a pending promise and a blocking Atomics.wait', async () => {
    // Attack: `await new Promise(() => {})` never settles; Atomics.wait blocks the main
    // thread in C++. Containment: both end at the timeout (the driver abandons the promise,
    // terminateExecution breaks the wait); the context is kept.
    const bystander = await Bystander.start(app);
    const nb = notebookId('js-wait');
    await run(app, nb, ['var kept = 7'], { language: 'javascript' });
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'promise', code: 'await new Promise(() => {})' },
          { cellId: 'atomics', code: 'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)' },
        ],
        language: 'javascript',
        timeout: 1,
        stopOnError: false,
      },
      200,
    );
    expect(status.results.map((r) => [r.type, r.timedOut])).toEqual([
      ['error', true],
      ['error', true],
    ]);
    expect((await run(app, nb, ['kept'], { language: 'javascript' })).results[0]!.output).toBe('7');
  });

  it('ends a cell that SIGSTOPs itself at its timeout (Python and JavaScript)', async () => {
    // Attack: a stopped process cannot handle the interrupt, and a server that waited for the
    // kernel would wait forever. Containment: the wall clock is the server's: after the grace
    // period SIGKILL (which works on stopped processes) ends the tree; critical result.
    const bystander = await Bystander.start(app);
    const nb = notebookId('sigstop');
    const started = performance.now();
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'py', code: 'import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)' },
          { cellId: 'js', code: "process.kill(process.pid, 'SIGSTOP')", language: 'javascript' },
        ],
        timeout: 1,
        stopOnError: false,
      },
      200,
    );
    expect(status.results.map((r) => [r.type, r.timedOut])).toEqual([
      ['critical', true],
      ['critical', true],
    ]);
    expect(performance.now() - started).toBeLessThan(2 * (1000 + LIMITS.interruptGraceMs) + 3000);
    expect(status.results[0]!.output).toMatch(/did not stop when interrupted/);
  });
});

describe('output', () => {
  it('caps a Python stdout flood (print and a subprocess writing to fd 1)', async () => {
    // Attack: print without end, and `yes` writing straight to the inherited fd 1. Containment:
    // the driver and then the server keep at most maxOutputBytes and count the rest; the cell
    // ends at its timeout and the server's memory does not grow with the flood.
    const bystander = await Bystander.start(app);
    const nb = notebookId('flood');
    const rss = process.memoryUsage().rss;
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'print', code: "while True:\n    print('x' * 1000)" },
          { cellId: 'yes', code: "import subprocess\nsubprocess.run(['/usr/bin/yes', 'y' * 500])" },
        ],
        timeout: 1,
        stopOnError: false,
      },
      300,
    );
    for (const result of status.results) {
      expect(result).toMatchObject({ type: 'error', timedOut: true });
      expect(Buffer.byteLength(result.output)).toBeLessThan(CAP + 4096);
      expect(result.droppedBytes).toBeGreaterThan(1_000_000);
      expect(result.output).toMatch(/\[output truncated: \d+ bytes dropped, limit 65536 bytes\]/);
    }
    expect(process.memoryUsage().rss - rss).toBeLessThan(200 << 20);
  });

  it('caps a JavaScript flood written straight to fd 1, past the driver, on the server side', async () => {
    // Attack: fs.writeSync(1) bypasses the driver's capture and its cap: the bytes reach the
    // server's pipe raw. Containment: the server's own OutputBuffer caps them.
    const bystander = await Bystander.start(app);
    const nb = notebookId('js-flood');
    const rss = process.memoryUsage().rss;
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        `const fs = require('fs'); const s = Buffer.alloc(65536, 'y');
for (;;) {
  try { fs.writeSync(1, s); } catch (e) { if (e.code !== 'EAGAIN') throw e; } // the pipe is non-blocking
}`,
        { language: 'javascript', timeout: 1 },
      ),
    );
    const result = status.results[0]!;
    expect(result).toMatchObject({ type: 'error', timedOut: true });
    expect(Buffer.byteLength(result.output)).toBeLessThan(CAP + 4096);
    expect(result.droppedBytes).toBeGreaterThan(10_000_000);
    expect(process.memoryUsage().rss - rss).toBeLessThan(200 << 20);
  });

  it('caps one gigantic line (64 MiB print, 64 MiB raw write to fd 1)', async () => {
    // Attack: a single line far larger than the cap, with no newline to split on, from Python
    // and from JavaScript's raw fd 1. Containment: it is cut at maxOutputBytes.
    const bystander = await Bystander.start(app);
    const nb = notebookId('bigline');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'py', code: "print('z' * (64 << 20), end='')" },
          {
            cellId: 'js',
            // Every byte, through partial writes and EAGAIN (fd 1 is a non-blocking pipe).
            code: `const fs = require('fs'); const b = Buffer.alloc(64 << 20, 'w'); let off = 0;
while (off < b.length) {
  try { off += fs.writeSync(1, b, off); } catch (e) { if (e.code !== 'EAGAIN') throw e; }
}
'done'`,
            language: 'javascript',
          },
        ],
        timeout: 5,
      },
      100,
    );
    expect(status.results.map((r) => r.type)).toEqual(['output', 'output']);
    for (const result of status.results) {
      expect(Buffer.byteLength(result.output)).toBeLessThan(CAP + OUTPUT_SLACK + 10);
      expect(result.droppedBytes).toBeGreaterThan((64 << 20) - CAP - 1);
    }
  });

  it("caps a cell's trailing value like its output (Python and JavaScript)", async () => {
    // Attack: a big string as the cell's value, which is not stdout. Containment: the
    // result's text is bounded by maxOutputBytes whichever way the bytes come, so a cell cannot
    // store or make the server serve more than that per cell.
    const bystander = await Bystander.start(app);
    const nb = notebookId('bigvalue');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'py', code: "'v' * (32 << 20)" },
          { cellId: 'js', code: "'q'.repeat(4 << 20)", language: 'javascript' },
        ],
        timeout: 5,
      },
      100,
    );
    expect(status.results.map((r) => r.type)).toEqual(['output', 'output']);
    for (const r of status.results) {
      expect
        .soft(Buffer.byteLength(r.output), `${r.cellId} result text, bytes`)
        .toBeLessThan(CAP + OUTPUT_SLACK);
    }
  });

  it("caps a gigantic error message like the cell's output (Python and JavaScript)", async () => {
    // Attack: raise an exception whose message is 4 MiB (it appears in evalue and in the
    // traceback). Containment: as for values, the result's text stays within maxOutputBytes.
    const bystander = await Bystander.start(app);
    const nb = notebookId('bigerror');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          { cellId: 'py', code: "raise ValueError('e' * (4 << 20))" },
          { cellId: 'js', code: "throw new Error('e'.repeat(4 << 20))", language: 'javascript' },
        ],
        timeout: 5,
        stopOnError: false,
      },
      100,
    );
    expect(status.results.map((r) => r.type)).toEqual(['error', 'error']);
    for (const r of status.results) {
      expect
        .soft(Buffer.byteLength(r.output), `${r.cellId} result text, bytes`)
        .toBeLessThan(CAP + OUTPUT_SLACK);
    }
  });
});

describe('disk and descriptors', () => {
  it('fills /tmp and /dev/shm only up to their tmpfs size (ENOSPC)', async () => {
    // Attack: write 1 MiB blocks into several files (each below RLIMIT_FSIZE) until something
    // gives. Containment: /tmp and /dev/shm are tmpfs of kernelTmpMb each: ENOSPC (28).
    const bystander = await Bystander.start(app);
    const nb = notebookId('tmpfill');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        py`import json, os
out = {}
for d in ['/tmp', '/dev/shm']:
    total, err = 0, None
    try:
        for i in range(64):
            with open(f'{d}/fill{i}', 'wb') as f:
                for _ in range(4):
                    f.write(b'f' * (1 << 20)); f.flush(); total += 1 << 20
    except OSError as e:
        err = e.errno
    out[d] = [total >> 20, err]
print(json.dumps(out))`,
      ),
      100,
    );
    const out = JSON.parse(status.results[0]!.output);
    for (const d of ['/tmp', '/dev/shm']) {
      expect(out[d][1]).toBe(28);
      expect(out[d][0]).toBeLessThanOrEqual(LIMITS.kernelTmpMb);
    }
  });

  it('cannot fill /dev: it is read-only (only /dev/shm, sized, takes files)', async () => {
    // Attack: bwrap's --dev is a tmpfs without a size of its own; files written there would be
    // memory. Containment: the sandbox remounts /dev read-only (device nodes still work), so
    // the first write fails with EROFS.
    const bystander = await Bystander.start(app);
    const nb = notebookId('devfill');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        py`import json
total, err = 0, None
try:
    for i in range(100):
        with open(f'/dev/fill{i}', 'wb') as f:
            for _ in range(4):
                f.write(b'd' * (1 << 20)); f.flush(); total += 1 << 20
except OSError as e:
    err = e.errno
print(json.dumps([total >> 20, err]))`,
        { timeout: 10 },
      ),
      100,
    );
    const result = status.results[0]!;
    expect(result.type).toBe('output');
    expect(JSON.parse(result.output)).toEqual([0, 30]);
  });

  it('fills its workspace only up to its quota (ENOSPC), in bytes and in files', async () => {
    // Attack: the workspace is on the host's disk: fill it, with files below RLIMIT_FSIZE so
    // that limit does not stop it, then exhaust inodes with empty files. The attack stops
    // itself at 200 MiB and 20000 files, so an unbounded workspace fails the test without
    // filling the disk. Containment: each workspace is a filesystem of its own of
    // workspaceMb / workspaceInodes: ENOSPC (28), nothing else on the host fills up.
    const bystander = await Bystander.start(app);
    const nb = notebookId('wsfill');
    const status = await underAttack(
      app,
      bystander,
      attack(
        nb,
        py`import json, os
os.makedirs('fill', exist_ok=True)
total, err = 0, None
try:
    for i in range(50):
        with open(f'fill/{i}', 'wb') as f:
            for _ in range(4):
                f.write(b'w' * (1 << 20)); f.flush(); os.fsync(f.fileno()); total += 1 << 20
except OSError as e:
    err = e.errno
for i in range(50):
    try:
        os.unlink(f'fill/{i}')
    except OSError:
        pass
files, ierr = 0, None
os.makedirs('inodes', exist_ok=True)
try:
    for i in range(20000):
        open(f'inodes/{i}', 'w').close(); files += 1
except OSError as e:
    ierr = e.errno
for i in range(files):
    os.unlink(f'inodes/{i}')
print(json.dumps({'mb': total >> 20, 'err': err, 'files': files, 'ierr': ierr}))`,
        { timeout: 20 },
      ),
      100,
    );
    expect(status.results[0]!.type).toBe('output');
    const data = JSON.parse(status.results[0]!.output);
    expect({ bytes: data.err, inodes: data.ierr }).toEqual({ bytes: 28, inodes: 28 });
    expect(data.mb).toBeLessThanOrEqual(WORKSPACE_MB);
    expect(data.files).toBeLessThanOrEqual(WORKSPACE_INODES);
  });

  it('stops a file in the workspace at RLIMIT_FSIZE (EFBIG), dense or sparse, from Python and JavaScript', async () => {
    // Attack: the workspace is on the host's disk. Write one file past kernelMaxFileMb, and
    // seek 4 GiB out and write a byte (a sparse file: cheap for the attacker, and then a 4 GiB
    // file for anything that copies it). Containment: RLIMIT_FSIZE, set before the uid drop so
    // the cell cannot raise it: EFBIG (27), SIGXFSZ being ignored by both runtimes.
    const bystander = await Bystander.start(app);
    const nb = notebookId('fsize');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          {
            cellId: 'py',
            code: py`import json, os, resource
out = {}
try:
    with open('dense', 'wb') as f:
        for _ in range(64):
            f.write(b'b' * (1 << 20)); f.flush()
    out['dense'] = 'wrote 64 MiB'
except OSError as e:
    out['dense'] = e.errno
out['denseSize'] = os.path.getsize('dense') >> 20
try:
    with open('sparse', 'wb') as f:
        f.seek(4 << 30); f.write(b'x'); f.flush()
    out['sparse'] = 'wrote at 4 GiB'
except OSError as e:
    out['sparse'] = e.errno
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
try:
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    out['raise'] = 'raised'
except (ValueError, OSError) as e:
    out['raise'] = type(e).__name__
print(json.dumps(out))`,
          },
          {
            cellId: 'js',
            language: 'javascript',
            code: `const fs = require('fs');
const fd = fs.openSync('sparse-js', 'w');
let code = 'wrote at 4 GiB';
try { fs.writeSync(fd, 'x', 4 * 2 ** 30); } catch (e) { code = e.code; }
fs.closeSync(fd);
console.log(JSON.stringify({ sparse: code }));`,
          },
        ],
        timeout: 5,
        stopOnError: false,
      },
      100,
    );
    expect(status.results.map((r) => r.type)).toEqual(['output', 'output']);
    expect(JSON.parse(status.results[0]!.output)).toEqual({
      dense: 27,
      denseSize: LIMITS.kernelMaxFileMb,
      sparse: 27,
      raise: 'ValueError',
    });
    expect(JSON.parse(status.results[1]!.output)).toEqual({ sparse: 'EFBIG' });
  });

  it('stops descriptor exhaustion at RLIMIT_NOFILE (EMFILE), which the cell cannot raise', async () => {
    // Attack: open /dev/null until it fails, after trying to raise the limit; many such
    // processes could drain the host's file table (fs.file-max). Containment: RLIMIT_NOFILE
    // (kernelMaxOpenFiles) per process, set before the uid drop: EMFILE (24); the kernel
    // recovers once the cell lets go of them.
    const bystander = await Bystander.start(app);
    const nb = notebookId('fds');
    const { data, status } = await runJson<{ opened: number; errno: number; raise: string; hard: number }>(
      app,
      nb,
      py`import json, os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard * 4, hard * 4)); r = 'raised'
except (ValueError, OSError) as e:
    r = type(e).__name__
fds, errno = [], None
try:
    while len(fds) < 200000:
        fds.append(os.open('/dev/null', os.O_RDONLY))
except OSError as e:
    errno = e.errno
for fd in fds:
    os.close(fd)
print(json.dumps({'opened': len(fds), 'errno': errno, 'raise': r, 'hard': hard}))`,
    );
    await bystander.check();
    expect(status.results[0]!.type).toBe('output');
    expect(data.errno).toBe(24);
    expect(data.raise).toBe('ValueError');
    expect(data.hard).toBe(LIMITS.kernelMaxOpenFiles);
    expect(data.opened).toBeLessThan(LIMITS.kernelMaxOpenFiles);
    expect((await run(app, nb, ['print("ok")'])).results[0]!.output).toBe('ok\n');
    // The same from JavaScript, whose runtime needs descriptors of its own to keep working.
    const js = await run(
      app,
      nb,
      [
        `const fs = require('fs'); const fds = []; let code;
try { for (;;) fds.push(fs.openSync('/dev/null', 'r')); } catch (e) { code = e.code; }
for (const fd of fds) fs.closeSync(fd);
console.log(JSON.stringify({ opened: fds.length, code }));`,
        '"js ok"',
      ],
      { language: 'javascript' },
    );
    expect(js.results.map((r) => r.type)).toEqual(['output', 'output']);
    const jsData = JSON.parse(js.results[0]!.output);
    expect(jsData.code).toBe('EMFILE');
    expect(jsData.opened).toBeLessThan(LIMITS.kernelMaxOpenFiles);
    await bystander.check();
  });
});
