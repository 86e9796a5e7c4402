/**
 * Each limit a job can run into, with programs that misbehave on purpose, in real sandboxes: the
 * job ends with the limit's `reason`, its whole process tree is gone, and other jobs run on.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRequest } from '../../src/jobs/job-plan.ts';
import type { Job } from '../../src/store/store.ts';
import { startJobs } from './helpers.ts';

const UIDS = { uidBase: 62503, uidCount: 3 };
const MiB = 1048576;

let t: Awaited<ReturnType<typeof startJobs>>;
beforeAll(async () => {
  t = await startJobs(UIDS);
}, 60_000);
afterAll(() => t?.close());

async function run(request: JobRequest): Promise<Job> {
  const job = await t.jobs.submit(request);
  return (await t.jobs.wait(job.id, 60))!;
}

/**
 * Live host processes running as this file's sandbox uids. Zombies are dead (they wait for the
 * host's init, which this container's reaps with a delay, to collect their exit status).
 */
function sandboxProcesses(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      if (/^State:\s+Z/m.test(status)) continue;
      if (uid >= UIDS.uidBase && uid < UIDS.uidBase + UIDS.uidCount) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

const asRoot = process.getuid?.() === 0;

describe('job limits', () => {
  it('ends an infinite loop at its wall-clock limit', async () => {
    const job = await run({
      language: 'python',
      code: 'while True: pass',
      limits: { wallMs: 1500, cpuMs: 60_000 },
    });
    expect(job).toMatchObject({ state: 'failed', reason: 'timeout', signal: 'SIGKILL', exitCode: null });
    expect(job.message).toMatch(/wall-clock limit of 1500 ms/);
    expect(job.wallMs).toBeGreaterThanOrEqual(1500);
    expect(job.wallMs).toBeLessThan(4000);
  });

  it.runIf(asRoot)('ends a busy program at its CPU-time limit, apart from the wall clock', async () => {
    const job = await run({
      language: 'python',
      code: 'while True: pass',
      limits: { wallMs: 20_000, cpuMs: 700 },
    });
    expect(job).toMatchObject({ state: 'failed', reason: 'cpu-time' });
    expect(job.cpuMs).toBeGreaterThanOrEqual(700);
    expect(job.wallMs).toBeLessThan(10_000);
  });

  it.runIf(asRoot)('ends a sleeping program at the wall clock, not the CPU limit', async () => {
    const job = await run({ command: 'sleep 30', limits: { wallMs: 1000, cpuMs: 300 } });
    expect(job).toMatchObject({ state: 'failed', reason: 'timeout', kind: 'command' });
    expect(job.cpuMs).toBeLessThan(300);
  });

  it('ends a job that stops itself (SIGSTOP) at its wall limit', async () => {
    const job = await run({ command: 'kill -STOP $$; echo never', runtime: 1 });
    expect(job).toMatchObject({ state: 'failed', reason: 'timeout', stdout: '' });
    expect(job.limits.wallMs).toBe(1000);
  });

  it.runIf(asRoot)('reports a memory bomb as memory, with the peak the cgroup saw', async () => {
    const job = await run({
      language: 'python',
      code: 'chunks = []\nwhile True:\n    chunks.append(b"x" * (16 << 20))',
      limits: { memoryBytes: 128 * MiB },
    });
    expect(job).toMatchObject({ state: 'failed', reason: 'memory' });
    expect(job.message).toMatch(/out of memory \(limit 128 MiB\)/);
    expect(job.peakMemoryBytes).toBeGreaterThan(100 * MiB);
    expect(job.peakMemoryBytes).toBeLessThanOrEqual(128 * MiB);
  });

  it.runIf(asRoot)('contains a fork bomb (pids) while another job runs fine', async () => {
    const bomb = t.jobs.submit({
      command: ':(){ :|:& };:; sleep 20',
      limits: { processes: 32, wallMs: 20_000 },
    });
    const bystander = t.jobs.submit({
      language: 'python',
      code: 'import time; time.sleep(0.5); print("fine")',
    });
    const [b, ok] = await Promise.all([bomb, bystander]);
    const [bombed, fine] = await Promise.all([t.jobs.wait(b.id, 60), t.jobs.wait(ok.id, 60)]);
    expect(fine).toMatchObject({ state: 'completed', stdout: 'fine\n' });
    expect(bombed).toMatchObject({ state: 'failed', reason: 'pids' });
    expect(bombed!.wallMs).toBeLessThan(10_000); // ended by the limit, not by its wall clock
    expect(sandboxProcesses()).toEqual([]);
  });

  it('ends an output flood at its cap and marks the output truncated', async () => {
    const job = await run({
      language: 'python',
      code: 'while True: print("x" * 1000)',
      limits: { outputBytes: 10_000, wallMs: 20_000 },
    });
    expect(job).toMatchObject({
      state: 'failed',
      reason: 'output-limit',
      stdoutTruncated: true,
      stderrTruncated: false,
    });
    expect(job.stdout.length).toBe(10_000);
    expect(job.wallMs).toBeLessThan(10_000);
  });

  it('reports the signal that killed the program', async () => {
    const job = await run({ command: 'kill -SEGV $$' });
    expect(job).toMatchObject({ state: 'failed', signal: 'SIGSEGV', exitCode: 139, reason: null });
  });

  it('cancels a running job and kills its whole tree: daemons and stopped children too', async () => {
    const job = await t.jobs.submit({
      command:
        'setsid sleep 600 & (sleep 600 & kill -STOP $!) & nohup sleep 600 >/dev/null 2>&1 & echo started; wait',
      limits: { wallMs: 60_000 },
    });
    for (let i = 0; i < 100 && (await t.jobs.get(job.id))!.state !== 'running'; i++)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 500));
    expect(sandboxProcesses().length).toBeGreaterThan(3);
    const cancelled = await t.jobs.cancel(job.id);
    expect(cancelled).toMatchObject({ state: 'cancelled', reason: 'cancelled', stdout: 'started\n' });
    expect(sandboxProcesses()).toEqual([]);
    // Idempotent, and the record is stored.
    expect((await t.jobs.cancel(job.id))!.state).toBe('cancelled');
    expect((await t.store.getJob(job.id))!.state).toBe('cancelled');
  });

  it('cancels a queued job before it starts', async () => {
    const blockers = await Promise.all([1, 2].map(() => t.jobs.submit({ command: 'sleep 30', runtime: 30 })));
    const queued = await t.jobs.submit({ command: 'echo never' });
    expect((await t.jobs.get(queued.id))!.state).toBe('queued');
    const cancelled = await t.jobs.cancel(queued.id);
    expect(cancelled).toMatchObject({ state: 'cancelled', startedAt: null, stdout: '' });
    await Promise.all(blockers.map((b) => t.jobs.cancel(b.id)));
  });

  it.runIf(asRoot)('confines writes to its own workspace quota, and leaves nothing behind', async () => {
    const job = await run({
      command: [
        'ln -s /etc/passwd link; mkdir -p a/b/c; chmod 000 a; mkfifo fifo',
        // Each file is within the file-size limit (64 MiB), together they pass the 64 MiB quota.
        'dd if=/dev/zero of=big1 bs=1M count=40 2>/dev/null; dd if=/dev/zero of=big2 bs=1M count=40 2>&1 | head -1',
        'echo done',
      ].join('; '),
    });
    expect(job.stdout).toMatch(/No space left on device/);
    expect(job.stdout).toMatch(/done\n$/);
    expect(readdirSync(join(t.dir, 'jobs'))).toEqual([]);
    expect(readFileSync('/etc/passwd', 'utf8')).toMatch(/^root:/);
  });

  it("lowers limits above the server's maximums to them", async () => {
    const job = await run({
      command: 'true',
      limits: { memoryBytes: 2 ** 40, wallMs: 1e9, processes: 100_000 },
    });
    expect(job.limits).toMatchObject({ memoryBytes: 1024 * MiB, wallMs: 60_000, processes: 256 });
    expect((await run({ command: 'true', runtime: 0 })).limits.wallMs).toBe(60_000);
  });
});
