/**
 * Exploit suite: processes, signals and the kernel's syscall surface. A cell must not reach
 * the server's process or another notebook's, must not change machine-wide state (clock,
 * hostname), must not leave anything running once its notebook is reset or its kernel is
 * gone, and must not reach the kernel interfaces the seccomp filter denies. A bystander notebook
 * must keep its context and answer promptly throughout.
 */
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attack,
  Bystander,
  closeAndCheck,
  liveProcessesOf,
  liveProcessesWith,
  notebookId,
  py,
  reset,
  run,
  runJson,
  startSecurityApp,
  underAttack,
  uniqueSleepSeconds,
  waitForHostProcess,
  type SecurityApp,
} from './helpers.ts';

let sa: SecurityApp;
let app: FastifyInstance;
beforeAll(async () => {
  sa = await startSecurityApp();
  app = sa.app;
});
afterAll(() => closeAndCheck(sa));

const EPERM = 1;
const ESRCH = 3;

const inPool = (uid: number) => uid >= sa.uidBase && uid < sa.uidBase + sa.uidCount;

describe('other processes', () => {
  it('cannot see, signal or ptrace the server (pid namespace), nor its own bwrap init', async () => {
    // Attack: the test process is the server; give the cell its pid and try kill(pid, 0),
    // SIGKILL, SIGSTOP, ptrace and process_vm_readv; list /proc for anything else; try to
    // kill or trace the sandbox's pid 1. Containment: the pid namespace hides every host
    // process (ESRCH); the seccomp filter denies ptrace and process_vm_* (EPERM); the
    // namespace's init ignores signals it has no handler for.
    const bystander = await Bystander.start(app);
    const server = process.pid;
    const nb = notebookId('server');
    const { data } = await runJson<Record<string, unknown>>(
      app,
      nb,
      py`import ctypes, json, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    ctypes.set_errno(0)
    return 0 if fn(*args) == 0 else ctypes.get_errno()
out = {}
for name, sig in [('kill 0', 0), ('kill SIGKILL', signal.SIGKILL), ('kill SIGSTOP', signal.SIGSTOP)]:
    try:
        os.kill(${server}, sig); out[name] = 0
    except OSError as e:
        out[name] = e.errno
out['ptrace server'] = call(libc.ptrace, 16, ${server}, None, None)
out['ptrace init'] = call(libc.ptrace, 16, 1, None, None)
buf = ctypes.create_string_buffer(8)
class IOVec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
local = IOVec(ctypes.cast(buf, ctypes.c_void_p), 8); remote = IOVec(0x400000, 8)
libc.process_vm_readv.restype = ctypes.c_ssize_t
ctypes.set_errno(0)
r = libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
out['process_vm_readv init'] = 0 if r >= 0 else ctypes.get_errno()
out['server in /proc'] = os.path.exists('/proc/${server}')
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
out['comms'] = [open(f'/proc/{p}/comm').read().strip() for p in pids]
os.kill(1, signal.SIGKILL)
os.kill(1, signal.SIGSTOP)
out['init alive'] = open('/proc/1/stat').read().split()[2]
print(json.dumps(out))`,
    );
    expect(data).toEqual({
      'kill 0': ESRCH,
      'kill SIGKILL': ESRCH,
      'kill SIGSTOP': ESRCH,
      'ptrace server': expect.toBeOneOf([ESRCH, EPERM]),
      'ptrace init': EPERM,
      'process_vm_readv init': EPERM,
      'server in /proc': false,
      comms: ['bwrap', 'python3'],
      // Still running (S: sleeping), not stopped or gone.
      'init alive': 'S',
    });
    expect(process.kill(server, 0)).toBe(true);
    await bystander.check();
  });

  it('kill(-1, SIGKILL) and killpg from one notebook reach only its own processes', async () => {
    // Attack: kill(-1) signals every process the caller may signal: with a shared uid or pid
    // namespace that would be every other kernel. Python and JavaScript both try, after
    // starting a child of their own; then the Python kernel kills its own process group.
    // Containment: separate pid namespaces and uids: only the cell's own child dies; the
    // killpg takes down the attacker's kernel alone (a critical result), never the bystander.
    const bystander = await Bystander.start(app);
    const other = await Bystander.start(app);
    const nb = notebookId('killall');
    const status = await underAttack(
      app,
      bystander,
      {
        notebookId: nb,
        cells: [
          {
            cellId: 'py',
            code: py`import os, signal, subprocess
child = subprocess.Popen(['/bin/sleep', '30'])
os.kill(-1, signal.SIGKILL)
child.wait()
print('child', child.returncode)`,
          },
          {
            cellId: 'js',
            language: 'javascript',
            code: `const { spawn } = require('child_process');
const child = spawn('/bin/sleep', ['30']);
await new Promise((r) => child.once('spawn', r));
const exited = new Promise((r) => child.once('exit', (c, s) => r(s)));
process.kill(-1, 'SIGKILL');
console.log('child', await exited)`,
          },
          // The JavaScript kernel must still answer (or have been replaced) after its kill(-1).
          { cellId: 'js-after', language: 'javascript', code: '40 + 2' },
          { cellId: 'killpg', code: 'import os, signal\nos.killpg(0, signal.SIGKILL)' },
        ],
        stopOnError: false,
      },
      100,
    );
    const [pyKill, js, jsAfter, killpg] = status.results;
    expect(pyKill).toMatchObject({ type: 'output', output: 'child -9\n' });
    // Either the cell saw its child die, or (had the runtime taken itself down) a critical result.
    expect(`${js!.type}: ${js!.output}`).toMatch(/^(output: child SIGKILL\n|critical: [^]*)$/);
    expect({ type: jsAfter!.type, output: jsAfter!.output }).toEqual({ type: 'output', output: '42' });
    expect(killpg).toMatchObject({ type: 'critical' });
    expect(killpg!.output).toMatch(/exited with code 137|killed by SIGKILL/);
    await other.check();
  });

  it("cannot change the machine's clock or hostname", async () => {
    // Attack: set the realtime clock (breaks TLS, logs, every timeout on the host), adjust it,
    // set the host and domain names, with syscalls and with date(1). Containment: no
    // CAP_SYS_TIME (and the seccomp filter): EPERM; the uts namespace is the sandbox's own, so
    // even a successful sethostname would not reach the host.
    const bystander = await Bystander.start(app);
    const hostBefore = hostname();
    const { data } = await runJson<Record<string, unknown>>(
      app,
      notebookId('clock'),
      py`import ctypes, json, socket, subprocess, time
libc = ctypes.CDLL(None, use_errno=True)
out = {}
try:
    time.clock_settime(time.CLOCK_REALTIME, 0); out['clock_settime'] = 0
except OSError as e:
    out['clock_settime'] = e.errno
class Timeval(ctypes.Structure):
    _fields_ = [('sec', ctypes.c_long), ('usec', ctypes.c_long)]
ctypes.set_errno(0)
out['settimeofday'] = 0 if libc.settimeofday(ctypes.byref(Timeval(0, 0)), None) == 0 else ctypes.get_errno()
timex = ctypes.create_string_buffer(256); timex[0] = b'\x01'  # modes = ADJ_OFFSET
ctypes.set_errno(0)
out['adjtimex'] = 0 if libc.adjtimex(timex) >= 0 else ctypes.get_errno()
try:
    socket.sethostname('pwned'); out['sethostname'] = 0
except OSError as e:
    out['sethostname'] = e.errno
ctypes.set_errno(0)
out['setdomainname'] = 0 if libc.setdomainname(b'pwned', 5) == 0 else ctypes.get_errno()
out['date -s'] = subprocess.run(['date', '-s', '@0'], capture_output=True).returncode != 0
out['hostname'] = socket.gethostname()
out['year'] = time.gmtime().tm_year
print(json.dumps(out))`,
    );
    expect(data).toEqual({
      clock_settime: EPERM,
      settimeofday: EPERM,
      adjtimex: EPERM,
      sethostname: EPERM,
      setdomainname: EPERM,
      'date -s': true,
      hostname: 'runcell',
      year: new Date().getUTCFullYear(),
    });
    expect(hostname()).toBe(hostBefore);
    expect(Math.abs(Date.now() - new Date().getTime())).toBeLessThan(1000);
    await bystander.check();
  });
});

describe('processes that try to stay', () => {
  it('daemons (setsid, double fork, nohup, ignored signals) do not outlive a reset', async () => {
    // Attack: detach from the kernel every way a daemon does, so a reset that kills "the
    // kernel" (or its process group or session) misses them: setsid in the shell, a Python
    // double fork with setsid, nohup with SIGHUP/SIGTERM ignored. Containment: every process
    // stays in the kernel's cgroup, which reset empties with SIGKILL; on the host no live
    // process of the notebook's pool uid remains.
    const bystander = await Bystander.start(app);
    const nb = notebookId('daemons');
    const [m1, m2, m3] = [uniqueSleepSeconds(), uniqueSleepSeconds(), uniqueSleepSeconds()];
    const status = await run(app, nb, [
      py`import os, subprocess
subprocess.Popen(['/bin/sh', '-c', 'setsid /bin/sleep ${m1} >/dev/null 2>&1 < /dev/null &'], start_new_session=True).wait()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sleep', ['sleep', '${m2}'])
    os._exit(0)
os.wait()
subprocess.Popen(['/bin/sh', '-c', 'trap "" HUP TERM INT; nohup /bin/sleep ${m3} >/dev/null 2>&1 &'], start_new_session=True).wait()
print('daemons started')`,
    ]);
    expect(status.results[0]!.output).toBe('daemons started\n');
    const daemons = await Promise.all([m1, m2, m3].map((m) => waitForHostProcess(`sleep ${m}`)));
    const uid = daemons[0]!.uid;
    expect(inPool(uid)).toBe(true);
    expect(daemons.map((d) => d.uid)).toEqual([uid, uid, uid]);
    await bystander.check('with the daemons running');
    await reset(app, nb);
    // reset resolves once the tree is dead: nothing of that uid is left, not even for a moment.
    expect(liveProcessesOf(uid)).toEqual([]);
    for (const m of [m1, m2, m3]) expect(liveProcessesWith(`sleep ${m}`)).toEqual([]);
    await bystander.check();
  });

  it('a detached, unref()ed JavaScript child does not outlive a reset', async () => {
    // Attack: spawn({ detached: true }) puts the child in a new session; unref() lets the
    // kernel forget it. Containment: the cgroup, as above.
    const bystander = await Bystander.start(app);
    const nb = notebookId('js-daemon');
    const marker = uniqueSleepSeconds();
    const status = await run(
      app,
      nb,
      [
        `const { spawn } = require('child_process');
spawn('/bin/sh', ['-c', 'setsid /bin/sleep ${marker} &'], { detached: true, stdio: 'ignore' }).unref();
'started'`,
      ],
      { language: 'javascript' },
    );
    expect(status.results[0]!.output).toBe("'started'");
    const daemon = await waitForHostProcess(`sleep ${marker}`);
    expect(inPool(daemon.uid)).toBe(true);
    await reset(app, nb);
    expect(liveProcessesOf(daemon.uid)).toEqual([]);
    await bystander.check();
  });

  it('a background process survives a timeout with its context, and dies with its kernel', async () => {
    // Attack: start a background process, then time out. By design an interrupted cell keeps
    // its context, processes included: they stay in the notebook's cgroup (its memory and pids
    // limits). When the kernel is killed (a cell that ignores the interrupt) or exits, the
    // background process must go with it: the cgroup is emptied before the result is
    // reported.
    const bystander = await Bystander.start(app);
    const nb = notebookId('background');
    const [m1, m2] = [uniqueSleepSeconds(), uniqueSleepSeconds()];
    const status = await underAttack(
      app,
      bystander,
      attack(nb, `import subprocess, time\nbg = subprocess.Popen(['/bin/sleep', '${m1}'])\ntime.sleep(100)`, {
        timeout: 1,
      }),
    );
    expect(status.results[0]).toMatchObject({ type: 'error', timedOut: true });
    const bg = await waitForHostProcess(`sleep ${m1}`);
    expect(inPool(bg.uid)).toBe(true);
    expect((await run(app, nb, ['bg.poll() is None'])).results[0]!.output).toBe('True');
    // Now a cell that ignores the interrupt: the kernel is killed, and the background with it.
    const stubborn = await run(
      app,
      nb,
      ['import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(100)'],
      { timeout: 1 },
    );
    expect(stubborn.results[0]).toMatchObject({ type: 'critical', timedOut: true });
    expect(liveProcessesWith(`sleep ${m1}`)).toEqual([]);
    // A kernel that exits by itself (os._exit) takes its daemons along too.
    const exiting = await run(app, nb, [
      py`import os, subprocess
subprocess.Popen(['/bin/sh', '-c', 'setsid /bin/sleep ${m2} &'], start_new_session=True).wait()
os._exit(0)`,
    ]);
    expect(exiting.results[0]).toMatchObject({ type: 'critical' });
    expect(exiting.results[0]!.output).toMatch(/exited with code 0/);
    expect(liveProcessesWith(`sleep ${m2}`)).toEqual([]);
    await bystander.check();
  });
});

describe('the kernel interface', () => {
  it('is refused the syscalls the seccomp filter denies (EPERM; clone3 ENOSYS)', async () => {
    // Attack: kernel exploits start from rarely used, bug-prone interfaces: io_uring, eBPF,
    // userfaultfd, perf, keyrings (not namespaced), new namespaces (user namespaces above
    // all), mount APIs, module loading, ptrace, file handles, personality flags that weaken
    // memory protections. Call each directly with syscall(2), arguments that would otherwise
    // get past the argument checks. Containment: the seccomp filter answers EPERM (clone3:
    // ENOSYS, so libc falls back to clone, whose flags it can check) and the process is marked
    // as filtered (Seccomp: 2).
    const bystander = await Bystander.start(app);
    const { data } = await runJson<{ results: Record<string, number>; seccomp: string }>(
      app,
      notebookId('seccomp'),
      py`import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(4096)
P = ctypes.addressof(buf)
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if r == 0 and nr == 56:
        os._exit(0)  # a child from clone(): must not run on
    return 0 if r >= 0 else ctypes.get_errno()
CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x00020000, 17
calls = {
    'io_uring_setup': (425, 1, P),
    'bpf': (321, 0, P, 128),
    'userfaultfd': (323, 0),
    'perf_event_open': (298, P, 0, -1, -1, 0),
    'keyctl': (250, 1, 0),                      # KEYCTL_JOIN_SESSION_KEYRING
    'add_key': (248, P, P, 0, 0, -3),
    'request_key': (249, P, P, 0, 0),
    'unshare(NEWUSER)': (272, CLONE_NEWUSER),
    'unshare(NEWNS)': (272, CLONE_NEWNS),
    'clone(NEWUSER)': (56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    'clone3': (435, P, 88),
    'setns': (308, 0, 0),
    'mount': (165, P, P, P, 0, 0),
    'fsopen': (430, P, 0),
    'open_tree': (428, -100, P, 0),
    'move_mount': (429, -100, P, -100, P, 0),
    'pivot_root': (155, P, P),
    'chroot': (161, P),
    'ptrace(TRACEME)': (101, 0, 0, 0, 0),
    'process_vm_readv': (310, 1, P, 1, P, 1, 0),
    'kcmp': (312, 1, 1, 0, 0, 0),
    'init_module': (175, P, 0, P),
    'finit_module': (313, 0, P, 0),
    'kexec_load': (246, 0, 0, 0, 0),
    'open_by_handle_at': (304, 0, P, 0),
    'name_to_handle_at': (303, -100, P, P, P, 0),
    'personality(READ_IMPLIES_EXEC)': (135, 0x0400000),
    'syslog': (103, 3, P, 16),
    'acct': (163, 0),
    'reboot': (169, 0xfee1dead, 672274793, 0x4321fedc, 0),
    'swapon': (167, P, 0),
    'settimeofday': (164, P, 0),
    'sethostname': (170, P, 1),
    'fanotify_init': (300, 0, 0),
    'iopl': (172, 3),
    'ioperm': (173, 0, 1, 1),
}
buf.value = b'/tmp'
results = {name: sc(*args) for name, args in calls.items()}
status = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
print(json.dumps({'results': results, 'seccomp': status['Seccomp'].strip()}))`,
    );
    const expected = Object.fromEntries(
      Object.keys(data.results).map((name) => [name, name === 'clone3' ? 38 : EPERM]),
    );
    expect(data.results).toEqual(expected);
    expect(data.seccomp).toBe('2');
    // Ordinary things still work under the filter: threads, subprocesses, files.
    const ok = await run(app, notebookId('seccomp-ok'), [
      "import subprocess, threading\nt = threading.Thread(target=lambda: None); t.start(); t.join()\nprint(subprocess.run(['/bin/echo', 'fine'], capture_output=True, text=True).stdout, end='')",
    ]);
    expect(ok.results[0]!.output).toBe('fine\n');
    await bystander.check();
  });
});
