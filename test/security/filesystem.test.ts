/**
 * Exploit suite: the filesystem and the environment. What a cell can read, write, link or
 * trick the server into touching on the host, and what it can learn about other notebooks and
 * the server itself. A bystander notebook must keep its context and answer promptly throughout.
 */
import { randomUUID } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.ts';
import {
  Bystander,
  closeAndCheck,
  notebookId,
  py,
  reset,
  run,
  runJson,
  startSecurityApp,
  type SecurityApp,
} from './helpers.ts';

// The server's environment holds a secret no kernel may see. Set before the app starts, so the
// server (and anything it spawns without an explicit environment) has it.
const SECRET = `runcell-secret-${randomUUID()}`;
process.env.RUNCELL_TEST_SECRET = SECRET;

let sa: SecurityApp;
let app: FastifyInstance;
let dataDir: string;
let workspaceRoot: string;
beforeAll(async () => {
  dataDir = tempDir('runcell-sec-data-');
  sa = await startSecurityApp({ dataDir });
  app = sa.app;
  // tempDir() is searchable by others, so workspaces live under the data directory.
  workspaceRoot = join(dataDir, 'workspaces');
});
afterAll(() => closeAndCheck(sa));

const hostWorkspace = (nb: string) => join(workspaceRoot, nb);

/**
 * Makes the notebook's next kernel run as a different pool uid than its last one, so the
 * server hands the workspace over (chowns the tree) before that kernel starts. After a reset
 * the notebook's uid goes back to the pool; a throwaway notebook starting in between takes a
 * free uid too, so whether the pool hands out the most or the least recently freed uid, the
 * notebook's next kernel gets another one.
 */
async function nextKernelWithNewUid(nb: string): Promise<void> {
  const ownerBefore = statSync(hostWorkspace(nb)).uid;
  for (let attempt = 0; attempt < 5; attempt++) {
    await reset(app, nb);
    const taker = notebookId('uid-taker');
    expect((await run(app, taker, ['1'])).results[0]!.type).toBe('output');
    const status = await run(app, nb, ['print("new kernel")']);
    expect(status.results[0]!.output.slice(0, 400)).toBe('new kernel\n');
    await reset(app, taker);
    if (statSync(hostWorkspace(nb)).uid !== ownerBefore) return;
  }
  throw new Error(`the notebook kept uid ${ownerBefore} across five kernels`);
}

describe('reading the host', () => {
  it("sees none of the host's secrets, home directories, server files or data directory", async () => {
    // Attack: look for the obvious (and the less obvious: through /proc/1/root and
    // /proc/self/root) from Python and JavaScript: the shadow file, root's home, the server's
    // source tree (process.cwd()), its data directory, database and workspace root.
    // Containment: the sandbox's root is a fresh tmpfs with only /usr and a few /etc files
    // bound in: none of these paths exist inside.
    const bystander = await Bystander.start(app);
    const paths = [
      '/etc/shadow',
      '/etc/passwd',
      '/etc/sudoers',
      '/root',
      '/home',
      '/var',
      '/run',
      '/work',
      '/sys',
      '/boot',
      process.cwd(),
      join(process.cwd(), 'src', 'config.ts'),
      dataDir,
      join(dataDir, 'runcell.db'),
      workspaceRoot,
      '/proc/1/root/etc/shadow',
      '/proc/self/root/root',
      `/proc/1/root${process.cwd()}`,
    ];
    const nb = notebookId('hostfiles');
    const { data } = await runJson<{ found: string[]; etc: string[] }>(
      app,
      nb,
      py`import json, os
paths = ${JSON.stringify(paths)}
print(json.dumps({'found': [p for p in paths if os.path.lexists(p)], 'etc': sorted(os.listdir('/etc'))}))`,
    );
    expect(data).toEqual({
      found: [],
      etc: ['alternatives', 'fonts', 'ld.so.cache', 'localtime', 'matplotlibrc', 'ssl'],
    });
    const js = await run(
      app,
      nb,
      [
        `const fs = require('fs');
console.log(JSON.stringify(${JSON.stringify(paths)}.filter((p) => { try { fs.lstatSync(p); return true; } catch { return false; } })))`,
      ],
      { language: 'javascript' },
    );
    expect(JSON.parse(js.results[0]!.output)).toEqual([]);
    await bystander.check();
  });

  it("finds no trace of another notebook's files, by path, by search or through /proc", async () => {
    // Attack: notebook A writes a secret into its workspace, /tmp and /dev/shm; notebook B,
    // running at the same time, searches the whole filesystem it can see for it, guesses the
    // host layout (../<A>, workspaces/<A>), and looks through every /proc/<pid>/root and cwd.
    // Containment: each kernel has its own mount and pid namespaces: B sees only its own two
    // processes (bwrap's init and itself), its own workspace and its own tmpfs.
    const bystander = await Bystander.start(app);
    const token = `secret-${randomUUID()}`;
    const a = notebookId('victim');
    const b = notebookId('snoop');
    await run(app, a, [
      py`for d in ['/workspace', '/tmp', '/dev/shm']:
    open(f'{d}/${token}.txt', 'w').write('${token}')`,
    ]);
    expect(readFileSync(join(hostWorkspace(a), `${token}.txt`), 'utf8')).toBe(token);
    const { data } = await runJson<{ hits: string[]; pids: string[]; contents: string[] }>(
      app,
      b,
      py`import json, os
token = '${token}'
hits, contents = [], []
for root, dirs, files in os.walk('/'):
    if root in ('/proc', '/usr'):
        dirs[:] = []
        continue
    for f in files + dirs:
        if token in f:
            hits.append(os.path.join(root, f))
    for f in files:
        if not os.path.isfile(os.path.join(root, f)) or os.path.islink(os.path.join(root, f)):
            continue  # devices (/dev/zero never ends) and links
        try:
            with open(os.path.join(root, f), 'rb') as fh:
                if token.encode() in fh.read(1 << 20):
                    contents.append(os.path.join(root, f))
        except OSError:
            pass
pids = sorted(p for p in os.listdir('/proc') if p.isdigit())
for p in pids:
    for sub in ['root/workspace', 'root/tmp', 'cwd']:
        try:
            hits += [f'/proc/{p}/{sub}/{f}' for f in os.listdir(f'/proc/{p}/{sub}') if token in f]
        except OSError:
            pass
for guess in ['/workspace/../${a}', '../${a}', '/workspaces/${a}', '${hostWorkspace(a)}']:
    if os.path.exists(os.path.join(guess, '${token}.txt')):
        hits.append(guess)
print(json.dumps({'hits': hits, 'pids': pids, 'contents': contents}))`,
    );
    expect(data).toEqual({ hits: [], pids: ['1', '2'], contents: [] });
    await bystander.check();
  });

  it("never shows the server's environment: not in /proc/*/environ, cmdline, os.environ or process.env", async () => {
    // Attack: the server's environment is where deployments keep secrets (here
    // RUNCELL_TEST_SECRET). Read every environ and cmdline in /proc, including bwrap's pid 1
    // (which keeps the environment bwrap was started with), and the kernel's own environment,
    // from Python and JavaScript. Containment: the launcher starts bwrap with an empty
    // environment and the kernel gets an explicit, fixed one.
    expect(process.env.RUNCELL_TEST_SECRET).toBe(SECRET);
    const bystander = await Bystander.start(app);
    const nb = notebookId('environ');
    const { data } = await runJson<{ read: string[]; leaks: string[]; env: string[] }>(
      app,
      nb,
      py`import json, os, glob
secret = '${SECRET}'
read, leaks = [], []
for path in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/task/*/environ'):
    try:
        data = open(path, 'rb').read()
    except OSError:
        continue
    read.append(path)
    if secret.encode() in data or b'RUNCELL_TEST_SECRET' in data:
        leaks.append(path)
if any(secret in v or k == 'RUNCELL_TEST_SECRET' for k, v in os.environ.items()):
    leaks.append('os.environ')
print(json.dumps({'read': sorted(read), 'leaks': leaks, 'env': sorted(os.environ)}))`,
    );
    expect(data.leaks).toEqual([]);
    expect(data.read).toEqual(expect.arrayContaining(['/proc/1/environ', '/proc/self/environ']));
    expect(data.env).not.toContain('RUNCELL_TEST_SECRET');
    const js = await run(
      app,
      nb,
      [
        `const fs = require('fs');
const leaks = [];
for (const pid of fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p))) {
  try { if (fs.readFileSync(\`/proc/\${pid}/environ\`, 'latin1').includes(${JSON.stringify(SECRET)})) leaks.push(pid); } catch {}
}
if (Object.values(process.env).some((v) => v.includes(${JSON.stringify(SECRET)})) || 'RUNCELL_TEST_SECRET' in process.env) leaks.push('process.env');
console.log(JSON.stringify(leaks))`,
      ],
      { language: 'javascript' },
    );
    expect(JSON.parse(js.results[0]!.output)).toEqual([]);
    await bystander.check();
  });
});

describe('writing the host', () => {
  it('cannot write anywhere but its workspace and its own tmpfs', async () => {
    // Attack: create or modify files in system directories, the sandbox root, /proc/sys and
    // /sys, and escape the workspace with "..". Containment: /usr and /etc files are read-only
    // binds, the root is a read-only tmpfs (EROFS), /proc/sys belongs to the host's root
    // (EACCES), there is no /sys (ENOENT).
    const bystander = await Bystander.start(app);
    const nb = notebookId('writes');
    const { data } = await runJson<Record<string, number | string>>(
      app,
      nb,
      py`import json, os
out = {}
def attempt(name, fn):
    try:
        fn(); out[name] = 'done'
    except OSError as e:
        out[name] = e.errno
for p in ['/usr/evil', '/usr/bin/python3', '/etc/evil', '/etc/ld.so.cache', '/evil', '/bin/evil',
          '/workspace/../evil', '/proc/sys/kernel/hostname', '/proc/sys/kernel/core_pattern', '/sys/evil']:
    attempt(p, lambda p=p: open(p, 'a').close())
attempt('mkdir /newdir', lambda: os.mkdir('/newdir'))
attempt('chmod python3', lambda: os.chmod('/usr/bin/python3', 0o4777))
attempt('rename /workspace', lambda: os.rename('/workspace', '/ws'))
attempt('unlink ld.so.cache', lambda: os.unlink('/etc/ld.so.cache'))
print(json.dumps(out))`,
    );
    const EROFS = 30;
    const EACCES = 13;
    expect(data).toEqual({
      '/usr/evil': EROFS,
      '/usr/bin/python3': EACCES, // owned by the host's root: permission is checked first
      '/etc/evil': EROFS,
      '/etc/ld.so.cache': EACCES,
      '/evil': EROFS,
      '/bin/evil': EROFS,
      '/workspace/../evil': EROFS,
      '/proc/sys/kernel/hostname': EACCES,
      '/proc/sys/kernel/core_pattern': EACCES,
      '/sys/evil': 2,
      'mkdir /newdir': EROFS,
      'chmod python3': EROFS,
      'rename /workspace': expect.any(Number),
      'unlink ld.so.cache': EROFS,
    });
    for (const p of ['/usr/evil', '/etc/evil', '/evil']) expect(existsSync(p)).toBe(false);
    await bystander.check();
  });

  it('cannot make the server chown a host file through a planted symlink when it hands the workspace over', async () => {
    // Attack: plant symlinks in the workspace to host files and directories (which the
    // sandbox cannot see, but the server can), at the top and deeper down, then get the
    // server to hand the workspace to a new kernel's uid: it chowns the whole tree as root.
    // Containment: the handover uses lchown and never descends into a symlinked directory, so
    // only the links themselves change owner; the host files keep owner, mode and content.
    const bystander = await Bystander.start(app);
    const hostDir = tempDir('runcell-sec-host-');
    const hostFile = join(hostDir, 'host-owned.txt');
    writeFileSync(hostFile, 'host content', { mode: 0o600 });
    const innerDir = join(hostDir, 'inner');
    mkdirSync(innerDir, { mode: 0o700 });
    writeFileSync(join(innerDir, 'deep.txt'), 'deep');
    const snapshot = (p: string) => {
      const s = statSync(p);
      return { uid: s.uid, gid: s.gid, mode: s.mode };
    };
    const before = [hostFile, hostDir, innerDir, '/etc/shadow', join(innerDir, 'deep.txt')].map(snapshot);
    const nb = notebookId('symlinks');
    const planted = await runJson<Record<string, unknown>>(
      app,
      nb,
      py`import json, os
os.makedirs('sub/deeper', exist_ok=True)
os.symlink('${hostFile}', 'link-file')
os.symlink('${hostDir}', 'link-dir')
os.symlink('${innerDir}', 'sub/deeper/link-inner')
os.symlink('/etc/shadow', 'sub/shadow')
os.symlink('/', 'root-link')
os.symlink('loop', 'loop')
readable = {}
for l in ['link-file', 'link-dir/host-owned.txt', 'sub/shadow']:
    try:
        open(l).read(); readable[l] = True
    except OSError as e:
        readable[l] = e.errno
print(json.dumps(readable))`,
    );
    // The targets are not visible inside: ENOENT (2).
    expect(planted.data).toEqual({ 'link-file': 2, 'link-dir/host-owned.txt': 2, 'sub/shadow': 2 });
    expect(lstatSync(join(hostWorkspace(nb), 'link-file')).isSymbolicLink()).toBe(true);

    await nextKernelWithNewUid(nb);

    const after = [hostFile, hostDir, innerDir, '/etc/shadow', join(innerDir, 'deep.txt')].map(snapshot);
    expect(after).toEqual(before);
    expect(readFileSync(hostFile, 'utf8')).toBe('host content');
    // The links themselves were handed over with the rest of the tree.
    const newOwner = statSync(hostWorkspace(nb)).uid;
    expect(lstatSync(join(hostWorkspace(nb), 'sub', 'deeper', 'link-inner')).uid).toBe(newOwner);
    expect(lstatSync(join(hostWorkspace(nb), 'link-file')).uid).toBe(newOwner);
    // And the new kernel still cannot reach the targets.
    const again = await run(app, nb, [
      "import os\nprint(os.path.exists('link-file'), os.path.exists('sub'))",
    ]);
    expect(again.results[0]!.output).toBe('False True\n');
    await bystander.check();
  });

  it('cannot hard-link a host file into the workspace (EXDEV), so the handover cannot reach one', async () => {
    // Attack: a hard link is the same inode as its target: if the workspace held one to a host
    // file, the server's chown at handover would give that file to the pool uid. Try link() on
    // everything visible that is not the cell's own: bound system files, a file under /usr,
    // an fd's /proc/self/fd magic link, and a file in the private /tmp. Containment: every
    // visible file outside the workspace is on another mount: EXDEV (18); host files are not
    // visible at all.
    const bystander = await Bystander.start(app);
    const nb = notebookId('hardlinks');
    const { data } = await runJson<Record<string, number | string>>(
      app,
      nb,
      py`import json, os
out = {}
open('/tmp/mine', 'w').write('x')
fd = os.open('/etc/ld.so.cache', os.O_RDONLY)
for i, src in enumerate(['/etc/ld.so.cache', '/etc/localtime', '/usr/bin/su', '/usr/bin/python3', f'/proc/self/fd/{fd}', '/tmp/mine']):
    try:
        os.link(src, f'hl{i}'); out[src.replace(str(fd), 'N')] = 'linked'
    except OSError as e:
        out[src.replace(str(fd), 'N')] = e.errno
print(json.dumps(out))`,
    );
    const EXDEV = 18;
    expect(data).toEqual({
      '/etc/ld.so.cache': EXDEV,
      '/etc/localtime': EXDEV,
      '/usr/bin/su': EXDEV,
      '/usr/bin/python3': EXDEV,
      '/proc/self/fd/N': EXDEV,
      '/tmp/mine': EXDEV,
    });
    await nextKernelWithNewUid(nb);
    // Nothing in the workspace is linked to anything else.
    const multiply = readdirSync(hostWorkspace(nb), { recursive: true, encoding: 'utf8' })
      .map((f) => join(hostWorkspace(nb), f))
      .filter((f) => !lstatSync(f).isDirectory() && lstatSync(f).nlink > 1);
    expect(multiply).toEqual([]);
    expect(statSync('/usr/bin/su').uid).toBe(0);
    await bystander.check();
  });

  it('keeps working with a hostile workspace tree: deeper than PATH_MAX, FIFOs, sockets, many files', async () => {
    // Attack: the server walks the workspace as root when it hands it to a new uid. Make that
    // walk hard: a directory chain deeper than PATH_MAX (4096 bytes), a FIFO (opening it would
    // block forever), a unix socket, 5000 files. Containment: the handover only lchowns
    // entries (never opens them); the notebook gets a new kernel as usual and the server stays
    // responsive; at worst only this notebook suffers.
    const bystander = await Bystander.start(app);
    const nb = notebookId('hostile-tree');
    const made = await run(
      app,
      nb,
      [
        py`import os, socket
os.mkdir('deep')
fd = os.open('deep', os.O_RDONLY)
for _ in range(1100):
    os.mkdir('dddd', dir_fd=fd)
    nfd = os.open('dddd', os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    fd = nfd
open(f'/proc/self/fd/{fd}/bottom', 'w').close()
os.mkfifo('fifo')
s = socket.socket(socket.AF_UNIX); s.bind('sock')
os.mkdir('many')
for i in range(5000):
    open(f'many/{i}', 'w').close()
print('planted')`,
      ],
      { timeout: 20 },
    );
    expect(made.results[0]!.output).toBe('planted\n');
    const started = performance.now();
    const attackDone = nextKernelWithNewUid(nb);
    await bystander.check('while the workspace is handed over');
    await attackDone;
    expect(performance.now() - started).toBeLessThan(10_000);
    const after = await run(app, nb, ["import os\nprint(len(os.listdir('many')), os.stat('fifo').st_uid)"]);
    expect(after.results[0]!.output).toBe('5000 1000\n');
    await bystander.check();
  });

  it('cannot address a path outside the workspace root through the notebook id', async () => {
    // Attack: the workspace path is <root>/<notebookId>: ask for "..", "../../etc", "a/b",
    // an absolute path, a NUL byte. Containment: ids are validated at the API (letters,
    // digits, . _ : -, not . or ..): 400, and no directory is created.
    const bystander = await Bystander.start(app);
    for (const id of ['..', '.', '../../etc', 'a/b', '/etc', 'x\0y', '%2e%2e', '']) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/submit',
        payload: { notebookId: id, cells: [{ cellId: 'c', code: 'print(1)' }] },
      });
      expect({ id, status: res.statusCode }).toEqual({ id, status: 400 });
    }
    expect(readdirSync(workspaceRoot).filter((f) => !/^[A-Za-z0-9._:-]+$/.test(f))).toEqual([]);
    expect(existsSync(join(dataDir, 'etc'))).toBe(false);
    // And a legal but unusual one stays inside the root.
    const odd = '...:-_x';
    const status = await run(app, odd, ['import os\nprint(os.getcwd())']);
    expect(status.results[0]!.output).toBe('/workspace\n');
    expect(existsSync(hostWorkspace(odd))).toBe(true);
    await bystander.check();
  });
});

describe('privilege', () => {
  it('cannot leave its root: /proc/self/root, chroot, mount, unshare, pivot_root, file handles', async () => {
    // Attack: the classic ways out of a mount namespace: follow /proc/<pid>/root, chroot and
    // fchdir, mount or bind-mount over something, a new user namespace (where one is root),
    // pivot_root, open_by_handle_at (opens any inode of a filesystem by number).
    // Containment: no capabilities (--cap-drop ALL, setpriv), no new user namespaces
    // (--disable-userns), and the seccomp filter where present: every attempt fails with
    // EPERM (user namespaces: ENOSPC without seccomp).
    const bystander = await Bystander.start(app);
    const nb = notebookId('escape');
    const { data } = await runJson<Record<string, unknown>>(
      app,
      nb,
      py`import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    ctypes.set_errno(0)
    return 0 if fn(*args) == 0 else ctypes.get_errno()
out = {}
out['/proc/self/root is /'] = sorted(os.listdir('/proc/self/root')) == sorted(os.listdir('/'))
try:
    out['/proc/1/root'] = sorted(os.listdir('/proc/1/root'))
except OSError as e:
    out['/proc/1/root'] = e.errno
try:
    os.chroot('/tmp'); out['chroot'] = 0
except OSError as e:
    out['chroot'] = e.errno
out['mount tmpfs'] = call(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None)
out['bind mount /'] = call(libc.mount, b'/', b'/tmp', None, 4096, None)
out['remount / rw'] = call(libc.mount, None, b'/', None, 32, None)
out['umount /workspace'] = call(libc.umount2, b'/workspace', 2)
out['unshare user'] = call(libc.unshare, 0x10000000)
out['unshare mount'] = call(libc.unshare, 0x00020000)
out['pivot_root'] = call(libc.syscall, 155, b'/tmp', b'/tmp')
class Handle(ctypes.Structure):
    _fields_ = [('bytes', ctypes.c_uint), ('type', ctypes.c_int), ('f', ctypes.c_ubyte * 128)]
# "Shocker": a forged handle for inode 2 (an ext4 root directory) on the host filesystem that
# /usr is bound from, opened through any fd of that mount.
h = Handle(); h.bytes = 8; h.type = 1; h.f[0] = 2
out['open_by_handle_at'] = call(libc.open_by_handle_at, os.open('/usr', os.O_RDONLY), ctypes.byref(h), 0)
p = subprocess.run(['unshare', '-r', 'id', '-u'], capture_output=True, text=True)
out['unshare -r'] = [p.returncode, p.stdout.strip()]
print(json.dumps(out))`,
    );
    const EPERM = 1;
    expect(data).toMatchObject({
      '/proc/self/root is /': true,
      chroot: EPERM,
      'mount tmpfs': EPERM,
      'bind mount /': EPERM,
      'remount / rw': EPERM,
      'umount /workspace': EPERM,
      'unshare mount': EPERM,
      pivot_root: EPERM,
    });
    expect([EPERM, 28]).toContain(data['unshare user']);
    expect(data['open_by_handle_at']).toBe(EPERM);
    expect((data['unshare -r'] as [number, string])[0]).not.toBe(0);
    // Whatever pid 1's root is (or EACCES), it is the sandbox's, not the host's.
    const proc1 = data['/proc/1/root'];
    if (Array.isArray(proc1))
      for (const hidden of ['root', 'home', 'work', 'var']) expect(proc1).not.toContain(hidden);
    await bystander.check();
  });

  it('gains nothing from setuid binaries: uid 1000, no capabilities, no_new_privs', async () => {
    // Attack: the host's /usr holds setuid-root programs (su, mount, passwd, ...). Run them
    // and try setuid(0). Containment: no_new_privs (setpriv) makes exec ignore the setuid bit,
    // all capability sets are empty, and the inner uid 1000 maps to an unprivileged pool uid:
    // su and mount fail, setuid(0) is EINVAL (0 is not mapped), setgroups EPERM.
    const bystander = await Bystander.start(app);
    const nb = notebookId('setuid');
    const { data } = await runJson<Record<string, unknown>>(
      app,
      nb,
      py`import json, os, stat, subprocess
fields = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
out = {k: fields[k].strip() for k in ['Uid', 'Gid', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs']}
out['suid'] = sorted(os.path.join(d, f) for d in ['/usr/bin', '/usr/sbin'] for f in os.listdir(d)
                     if os.path.isfile(os.path.join(d, f)) and os.stat(os.path.join(d, f)).st_mode & stat.S_ISUID)
runs = {}
for cmd in [['su', 'root', '-c', 'id -u'], ['mount', '-t', 'tmpfs', 'none', '/tmp'], ['passwd', '-S', 'root'],
            ['newgrp', 'root'], ['chsh', '-s', '/bin/sh', 'root']]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=3, stdin=subprocess.DEVNULL)
        runs[cmd[0]] = [p.returncode, p.stdout.strip()]
    except FileNotFoundError:
        pass
out['runs'] = runs
for name, fn in [('setuid(0)', lambda: os.setuid(0)), ('setresuid(0)', lambda: os.setresuid(0, 0, 0)),
                 ('setgroups([0])', lambda: os.setgroups([0]))]:
    try:
        fn(); out[name] = 0
    except OSError as e:
        out[name] = e.errno
out['ids'] = [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]
print(json.dumps(out))`,
    );
    const zero = '0000000000000000';
    expect(data).toMatchObject({
      Uid: '1000\t1000\t1000\t1000',
      Gid: '1000\t1000\t1000\t1000',
      CapInh: zero,
      CapPrm: zero,
      CapEff: zero,
      CapBnd: zero,
      CapAmb: zero,
      NoNewPrivs: '1',
      // uid 0 is not even mapped in the sandbox's user namespace: EINVAL.
      'setuid(0)': 22,
      'setresuid(0)': 22,
      'setgroups([0])': 1,
      ids: [1000, 1000, 1000, 1000],
    });
    // The host does have setuid-root programs, and they were visible and run.
    expect(data.suid).toEqual(expect.arrayContaining(['/usr/bin/su', '/usr/bin/mount']));
    const runs = data.runs as Record<string, [number, string]>;
    expect(Object.keys(runs)).toEqual(expect.arrayContaining(['su', 'mount']));
    for (const [name, [code, stdout]] of Object.entries(runs)) {
      expect({ name, failed: code !== 0, stdout: stdout === '0' ? 'root!' : 'ok' }).toEqual({
        name,
        failed: true,
        stdout: 'ok',
      });
    }
    await bystander.check();
  });
});
