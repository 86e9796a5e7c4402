/**
 * The sandbox against real bubblewrap: what a cell can see and do. Each case is an attack or a
 * limit that must keep holding.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BwrapSandbox } from '../../src/sandbox/bwrap-sandbox.ts';
import type { SandboxSpec } from '../../src/sandbox/sandbox.ts';
import { collect, silentLog, tempDir } from '../helpers.ts';

const asRoot = process.getuid?.() === 0;
const sandbox = new BwrapSandbox({
  uidBase: 62000,
  uidCount: 8,
  instance: `test-${process.pid}`,
  log: silentLog,
});
const workspace = join(tempDir(), 'ws');

function python(code: string, overrides: Partial<SandboxSpec> = {}, on: BwrapSandbox = sandbox) {
  return on.spawn({
    owner: 'test-notebook',
    argv: ['/usr/bin/python3', '-I', '-c', code],
    workspace,
    env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
    limits: {
      memoryBytes: 256 << 20,
      maxProcesses: 32,
      tmpBytes: 8 << 20,
      cpus: 1,
      openFiles: 256,
      fileBytes: 16 << 20,
    },
    network: false,
    ...overrides,
  });
}

beforeAll(() => sandbox.init());
afterAll(() => sandbox.close());

describe('BwrapSandbox', () => {
  it('runs the command in the workspace with only the given environment', async () => {
    const r = await collect(
      await python('import os, json; print(json.dumps([os.getcwd(), dict(os.environ)]))'),
    );
    expect(r.code).toBe(0);
    const [cwd, env] = JSON.parse(r.stdout);
    expect(cwd).toBe('/workspace');
    // bwrap sets PWD after --chdir; nothing of the server's is there.
    expect(env).toEqual({ PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', PWD: '/workspace' });
  });

  it("leaks no environment through bwrap's own pid 1", async () => {
    const r = await collect(await python("print(repr(open('/proc/1/environ','rb').read()))"));
    expect(r.stdout.trim()).toBe("b''");
  });

  it.runIf(asRoot)('never runs as host root, and cannot read host secrets', async () => {
    const r = await collect(
      await python(`
import os
print(os.getuid())
for p in ['/etc/shadow', '/root', '/etc/passwd', '/home']:
    print(p, os.path.exists(p))
print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])
`),
    );
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('1000');
    expect(lines.slice(1, 5)).toEqual([
      '/etc/shadow False',
      '/root False',
      '/etc/passwd False',
      '/home False',
    ]);
    expect(lines[5]).toBe('0000000000000000');
  });

  it("cannot see the server's files or the data directory", async () => {
    const r = await collect(await python("import os; print(sorted(os.listdir('/')))"));
    const root = JSON.parse(r.stdout.replaceAll("'", '"'));
    for (const hidden of ['root', 'home', 'work', 'var', 'opt', 'srv', 'mnt'])
      expect(root).not.toContain(hidden);
    expect(existsSync(process.cwd())).toBe(true);
    const r2 = await collect(
      await python(`import os; print(os.path.exists(${JSON.stringify(process.cwd())}))`),
    );
    expect(r2.stdout.trim()).toBe('False');
  });

  it('has no network', async () => {
    const r = await collect(
      await python(`
import socket
print(sorted(i[1] for i in socket.if_nameindex()))
try:
    socket.create_connection(('127.0.0.1', 6379), timeout=2); print('connected')
except OSError as e: print('refused', e.errno)
`),
    );
    const [ifaces, connect] = r.stdout.trim().split('\n');
    expect(ifaces).toBe("['lo']");
    expect(connect).toMatch(/^refused/);
  });

  it('writes only to the workspace and a private /tmp', async () => {
    const r = await collect(
      await python(`
import os
open('/workspace/out.txt', 'w').write('kept')
open('/tmp/x', 'w').write('x')
for p in ['/usr/evil', '/etc/evil', '/evil']:
    try: open(p, 'w'); print('wrote', p)
    except OSError as e: print('denied', p)
`),
    );
    expect(r.stdout.trim().split('\n')).toEqual(['denied /usr/evil', 'denied /etc/evil', 'denied /evil']);
    expect(readdirSync(workspace)).toContain('out.txt');
  });

  it('does not follow a planted symlink when handing the workspace over', async () => {
    const outside = join(tempDir(), 'host-file');
    writeFileSync(outside, 'host');
    await collect(await python(`import os; os.symlink(${JSON.stringify(outside)}, '/workspace/link')`));
    // The next sandbox gets the workspace chowned to its uid; the link target must stay untouched.
    const r = await collect(await python('print(open("/workspace/out.txt").read())'));
    expect(r.stdout.trim()).toBe('kept');
    const { statSync } = await import('node:fs');
    expect(statSync(outside).uid).toBe(process.getuid!());
  });

  it.runIf(asRoot)('kills the tree at the memory limit and says so', async () => {
    const r = await collect(
      await python("x = bytearray(400 << 20); x[::4096] = b'x' * len(x[::4096]); print('survived')"),
    );
    expect(r.stdout).not.toContain('survived');
    expect(r.reason).toBe('memory');
  });

  it.runIf(asRoot)('limits the number of processes', async () => {
    const r = await collect(
      await python(
        `
import os, time
n = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(5); os._exit(0)
        n += 1
except OSError as e:
    print('stopped at', n)
`,
        {
          limits: {
            memoryBytes: 256 << 20,
            maxProcesses: 16,
            tmpBytes: 1 << 20,
            cpus: 1,
            openFiles: 256,
            fileBytes: 1 << 20,
          },
        },
      ),
    );
    const n = Number(/stopped at (\d+)/.exec(r.stdout)?.[1]);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(16);
  });

  it('caps open files, file size and core dumps, and the sandbox cannot raise them', async () => {
    const r = await collect(
      await python(`
import resource
for name in ['RLIMIT_NOFILE', 'RLIMIT_FSIZE', 'RLIMIT_CORE']:
    print(name, resource.getrlimit(getattr(resource, name)))
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)); print('raised')
except ValueError as e: print('cannot raise')
try:
    with open('/workspace/big', 'wb') as f: f.write(b'x' * (17 << 20))
    print('wrote big file')
except OSError as e: print('fsize', e.errno)
`),
    );
    expect(r.stdout.trim().split('\n')).toEqual([
      'RLIMIT_NOFILE (256, 256)',
      `RLIMIT_FSIZE (${16 << 20}, ${16 << 20})`,
      'RLIMIT_CORE (0, 0)',
      'cannot raise',
      'fsize 27',
    ]);
  });

  it.runIf(asRoot)('caps CPU at the configured cores', async () => {
    // Two busy threads in separate processes for 1 s of wall time: with a 0.5-core quota they
    // get about 0.5 s of CPU between them, not 2 s.
    const r = await collect(
      await python(
        `
import os, time, resource
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        end = time.time() + 1
        while time.time() < end: pass
        os._exit(0)
    pids.append(pid)
for pid in pids: os.waitpid(pid, 0)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime)
`,
        {
          limits: {
            memoryBytes: 256 << 20,
            maxProcesses: 16,
            tmpBytes: 1 << 20,
            cpus: 0.5,
            openFiles: 256,
            fileBytes: 1 << 20,
          },
        },
      ),
    );
    const cpuSeconds = Number(r.stdout.trim());
    expect(cpuSeconds).toBeGreaterThan(0.2);
    expect(cpuSeconds).toBeLessThan(0.9);
  });

  it.runIf(asRoot)('gives one owner one host uid, and different owners different uids', async () => {
    const { execFileSync } = await import('node:child_process');
    const workspaces: Record<string, string> = { a: join(tempDir(), 'a'), b: join(tempDir(), 'b') };
    const start = async (owner: string, marker: string) => {
      const proc = await python(`import time; print('up', flush=True); time.sleep(30)  # ${marker}`, {
        owner,
        workspace: workspaces[owner],
      });
      return { proc, up: new Promise((resolve) => proc.stdout.once('data', resolve)) };
    };
    const procs = await Promise.all([
      start('a', 'marker-a1'),
      start('a', 'marker-a2'),
      start('b', 'marker-b'),
    ]);
    let table: string[];
    try {
      await Promise.all(procs.map((p) => p.up));
      // The host's view: which uid runs each python3 (the one whose argv carries the marker).
      table = execFileSync('/bin/ps', ['-eo', 'uid=,comm=,args='], {
        encoding: 'utf8',
        maxBuffer: 1 << 28,
      }).split('\n');
    } finally {
      await Promise.all(procs.map((p) => p.proc.kill()));
    }
    const uidOf = (marker: string) =>
      table
        .find((line) => line.includes(marker) && / python3 /.test(line))
        ?.trim()
        .split(/\s+/)[0];
    const [a1, a2, b] = ['marker-a1', 'marker-a2', 'marker-b'].map(uidOf);
    expect(a1).toBeDefined();
    expect(a1).toBe(a2);
    expect(b).toBeDefined();
    expect(b).not.toBe(a1);
    expect(Number(a1)).toBeGreaterThanOrEqual(62000);
  });

  it('kill() ends daemonized grandchildren too', async () => {
    const proc = await python(`
import os, subprocess, time
subprocess.Popen(['/bin/sh', '-c', 'setsid sleep 300 & sleep 300'], start_new_session=True)
print('started', flush=True)
time.sleep(300)
`);
    await new Promise<void>((resolve) => proc.stdout.once('data', () => resolve()));
    const exit = await proc.kill();
    expect(exit.reason).toBe('killed');
    if (asRoot) {
      // The uid's processes are gone from the host's process table.
      const { execFileSync } = await import('node:child_process');
      const left = execFileSync('/bin/ps', ['-eo', 'uid=,stat=,ppid=,comm='], {
        encoding: 'utf8',
        maxBuffer: 1 << 28,
      })
        .split('\n')
        .filter((l) => /^\s*620\d\d\s/.test(l) && !/^\s*\d+\s+Z/.test(l)); // zombies are dead, awaiting init
      expect(left).toEqual([]);
    }
  });

  it.runIf(asRoot)('a restarted server kills the sandboxes its previous run left behind', async () => {
    const instance = `sweep-${process.pid}`;
    const crashed = new BwrapSandbox({ uidBase: 62010, uidCount: 2, instance, log: silentLog });
    await crashed.init();
    const orphan = await crashed.spawn({
      owner: 'orphan',
      argv: ['/bin/sh', '-c', 'setsid sleep 300 & echo up; sleep 300'],
      env: {},
      limits: {
        memoryBytes: 64 << 20,
        maxProcesses: 8,
        tmpBytes: 1 << 20,
        cpus: 1,
        openFiles: 64,
        fileBytes: 1 << 20,
      },
      network: false,
    });
    await new Promise((resolve) => orphan.stdout.once('data', resolve));
    // The "crashed" server never calls kill(); the next one with the same instance sweeps.
    const next = new BwrapSandbox({ uidBase: 62012, uidCount: 2, instance, log: silentLog });
    await next.init();
    const exit = await orphan.exited;
    expect(exit.signal).toBe('SIGKILL');
    await next.close();
  });

  it.runIf(asRoot)('gives each workspace its own filesystem: bytes and inodes run out there', async () => {
    const dir = join(tempDir(), 'quota');
    const workspaceQuota = { bytes: 16 << 20, inodes: 256 };
    const r = await collect(
      await python(
        `
import os
try:
    with open('/workspace/fill', 'wb') as f:
        for _ in range(64): f.write(b'x' * (1 << 20))
    print('filled')
except OSError as e: print('bytes', e.errno)
os.remove('/workspace/fill')
try:
    for i in range(1000): open(f'/workspace/f{i}', 'w').close()
    print('created')
except OSError as e: print('inodes', e.errno)
for name in os.listdir('/workspace'): os.remove('/workspace/' + name)
open('/workspace/kept.txt', 'w').write('kept')
`,
        { workspace: dir, workspaceQuota },
      ),
    );
    expect(r.stdout.trim().split('\n')).toEqual(['bytes 28', 'inodes 28']);
    // Unmounted once the sandbox is gone; the next one finds the same files.
    const { statSync } = await import('node:fs');
    expect(statSync(dir).dev).toBe(statSync(join(dir, '..')).dev);
    const again = await collect(
      await python("print(open('/workspace/kept.txt').read())", { workspace: dir, workspaceQuota }),
    );
    expect(again.stdout.trim()).toBe('kept');
  });

  it.runIf(asRoot)(
    'gives new notebooks started at once distinct, empty volumes from the spares',
    async () => {
      const root = join(tempDir(), 'workspaces');
      mkdirSync(root, { mode: 0o711 }); // searchable by the pool uids, as the server's root is
      const workspaceQuota = { bytes: 16 << 20, inodes: 256 };
      const own = new BwrapSandbox({
        uidBase: 62014,
        uidCount: 4,
        instance: `spares-${process.pid}`,
        log: silentLog,
      });
      await own.init();
      try {
        const write = (name: string) =>
          python(
            `import os; print(sorted(os.listdir('/workspace'))); open('/workspace/${name}', 'w').close()`,
            { workspace: join(root, name), workspaceQuota, owner: `notebook:${name}` },
            own,
          ).then(collect);
        // The first start formats inline and makes a spare; the next three race for spares.
        expect((await write('a')).stdout.trim()).toBe('[]');
        const outs = await Promise.all(['b', 'c', 'd'].map(write));
        expect(outs.map((o) => o.stdout.trim())).toEqual(['[]', '[]', '[]']);
        expect(
          readdirSync(root)
            .filter((n) => n.endsWith('.img'))
            .sort(),
        ).toEqual(['a.img', 'b.img', 'c.img', 'd.img']);
        // One spare waits, formatted and mounted: its image and its mount point.
        expect(readdirSync(`${root}.spares`).filter((n) => n.endsWith('.img'))).toHaveLength(1);
      } finally {
        await own.close();
      }
      expect(readdirSync(`${root}.spares`)).toEqual([]);
    },
  );

  it('hands the sandbox no descriptor the server inherited', async () => {
    // Attack: a supervisor or shell started the server holding a descriptor without
    // close-on-exec (a pipe, a socket); bwrap would pass it into every sandbox. Containment: the
    // sandbox closes such descriptors when it starts.
    const { spawnSync } = await import('node:child_process');
    const fixture = new URL('./fixtures/leaky-parent.ts', import.meta.url).pathname;
    // bash opens fd 200 without close-on-exec, as a supervisor might, then becomes the server
    // (Node marks its low descriptors close-on-exec at start, not such a one).
    const r = spawnSync(
      '/bin/sh',
      ['-c', `exec 9</dev/null; exec "${process.execPath}" --import tsx "${fixture}"`],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    // stdio, the two protocol pipes, and the descriptor listing /proc/self/fd: nothing else.
    expect(JSON.parse(r.stdout.trim())).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
