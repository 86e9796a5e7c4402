/** Kernel bookkeeping: the per-machine cap, and kernels that cannot start. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { notebookId, run, startApp, tempDir } from '../helpers.ts';

describe('kernel manager', () => {
  it('stops the least recently used idle kernel past maxKernels, and tells that notebook', async () => {
    const app = await startApp({ maxKernels: 2, maxConcurrentNotebooks: 1 });
    try {
      const [a, b, c] = [notebookId('a'), notebookId('b'), notebookId('c')];
      await run(app, a, ['v = "a"']);
      await run(app, b, ['v = "b"']);
      await run(app, c, ['v = "c"']); // a is the least recently used: stopped
      expect((await app.inject(`/notebookstatus/${a}`)).json().active).toBe(false);
      expect((await app.inject(`/notebookstatus/${c}`)).json().active).toBe(true);
      const after = await run(app, a, ['print("fresh")']);
      expect(after.results[0]).toMatchObject({ type: 'output', output: 'fresh\n', contextLost: true });
      expect((await run(app, c, ['v'])).results[0]!.output).toBe("'c'");
    } finally {
      await app.close();
    }
  });

  it('reports a kernel that cannot start as a critical result, and the server keeps serving', async () => {
    // An interpreter the host can run (it answers --version) but the sandbox cannot see.
    const fake = join(tempDir(), 'python3');
    writeFileSync(fake, '#!/bin/sh\necho Python 3.99.0\n', { mode: 0o755 });
    const app = await startApp({ pythonPath: fake });
    try {
      const status = await run(app, notebookId(), ['1']);
      expect(status.status).toBe('error');
      expect(status.results[0]!.type).toBe('critical');
      expect(status.results[0]!.output).toMatch(/could not start a python kernel/);
      const js = await run(app, notebookId(), ['1 + 1'], { language: 'javascript' });
      expect(js.results[0]!.output).toBe('2');
    } finally {
      await app.close();
    }
  });

  it('offers only the languages whose interpreter is there', async () => {
    const app = await startApp({ pythonPath: '/usr/bin/no-such-python' });
    try {
      // Python programs (jobs) still run, with the toolchain the jobs find; its kernel is gone.
      const runtimes = (await app.inject('/api/v1/runtimes')).json() as {
        language: string;
        stateful: boolean;
      }[];
      const kernels = runtimes.filter((r) => r.stateful).map((r) => r.language);
      expect(kernels).not.toContain('python');
      expect(kernels.slice(0, 2)).toEqual(['javascript', 'typescript']);
      const res = await app.inject({
        method: 'POST',
        url: '/api/submit',
        payload: { notebookId: notebookId(), cells: [{ cellId: 'a', code: '1' }] },
      });
      expect(res.statusCode).toBe(400);
      expect(res.json().error).toMatch(/"python" is not available; available: javascript@/);
    } finally {
      await app.close();
    }
  });

  it('caps the timeout a submission asks for at the server maximum', async () => {
    const app = await startApp({ maxCellTimeoutSeconds: 60 });
    try {
      const status = (await run(app, notebookId(), ['1'], { timeout: 99999 })) as unknown as {
        timeoutSeconds: number;
      };
      expect(status.timeoutSeconds).toBe(60);
    } finally {
      await app.close();
    }
  });

  it('interrupts a cell past its CPU time, separately from its wall clock, and reports CPU use', async () => {
    const app = await startApp({ cellCpuSeconds: 1, kernelCpus: 1 });
    try {
      const nb = notebookId();
      const status = await run(app, nb, ['kept = 1', 'while True: pass'], { timeout: 30 });
      const busy = status.results[1]! as (typeof status.results)[number] & { limit: string; cpuMs: number };
      expect(busy.type).toBe('error');
      expect(busy.limit).toBe('cpu-time');
      expect(busy.timedOut).toBe(false);
      expect(busy.output).toMatch(/used more than 1 s of CPU time and was interrupted/);
      expect(busy.cpuMs).toBeGreaterThanOrEqual(1000);
      // A sleeping cell uses no CPU: only its wall clock could stop it.
      const sleepy = await run(app, nb, ['import time; time.sleep(1.5); kept'], { timeout: 30 });
      expect(sleepy.results[0]).toMatchObject({ type: 'output', output: '1', limit: null });
    } finally {
      await app.close();
    }
  });

  it('culls idle kernels, and the next cell says the context was lost', async () => {
    const app = await startApp({ cullIdleSeconds: 1, cullIntervalSeconds: 1 });
    try {
      const nb = notebookId();
      await run(app, nb, ['v = 1']);
      let active = true;
      for (let i = 0; i < 50 && active; i++) {
        await new Promise((r) => setTimeout(r, 100));
        active = (await app.inject(`/notebookstatus/${nb}`)).json().active;
      }
      expect(active).toBe(false);
      const after = await run(app, nb, ['print("fresh")', 'v'], { stopOnError: false });
      expect(after.results[0]).toMatchObject({ type: 'output', output: 'fresh\n', contextLost: true });
      expect(after.results[1]!.output).toMatch(/NameError/);
    } finally {
      await app.close();
    }
  });

  it('does not cull a notebook a client follows, unless cullConnected', async () => {
    const app = await startApp({ cullIdleSeconds: 1, cullIntervalSeconds: 1 });
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      const nb = notebookId();
      await run(app, nb, ['v = 1']);
      const controller = new AbortController();
      const feed = await fetch(`http://127.0.0.1:${port}/api/v1/notebooks/${nb}/events`, {
        signal: controller.signal,
      });
      expect(feed.status).toBe(200);
      await new Promise((r) => setTimeout(r, 2500)); // two cull rounds past the timeout
      expect((await app.inject(`/notebookstatus/${nb}`)).json().active).toBe(true);
      controller.abort();
    } finally {
      await app.close();
    }
  });
});
