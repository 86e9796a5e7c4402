/**
 * Exploit suite: the network. The sandbox has its own network namespace with nothing but a
 * private loopback: the host's loopback services, its API port, its unix sockets (paths and the
 * abstract namespace) and the outside world must all be out of reach. Outside addresses used
 * here are TEST-NET only (RFC 5737 / RFC 3849), so no real traffic can leave even if containment
 * failed. A bystander notebook must keep its context and answer promptly throughout.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Bystander,
  closeAndCheck,
  notebookId,
  py,
  run,
  runJson,
  startSecurityApp,
  type SecurityApp,
} from './helpers.ts';

let sa: SecurityApp;
let app: FastifyInstance;
beforeAll(async () => {
  sa = await startSecurityApp();
  app = sa.app;
});
afterAll(() => closeAndCheck(sa));

const ECONNREFUSED = 111;
const ENETUNREACH = 101;
const ENOENT = 2;
const EAI_AGAIN = -3;
const EAI_NONAME = -2;

/** A TCP (or unix) server on the host that counts the connections it gets. */
async function hostServer(address: { port: number; host: string } | { path: string }) {
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    socket.on('error', () => {}); // the probing client hangs up at once
    socket.end('hello from the host\n');
  });
  await new Promise<void>((resolve) => server.listen(address, resolve));
  const port = typeof server.address() === 'object' ? (server.address() as { port: number }).port : 0;
  return {
    port,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Whether the host itself can connect: proves a target is really there to be protected. */
function hostCanConnect(target: { port: number; host: string } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(target as never);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Python: connect to each (host, port) and report the errno (0 when it connected). */
const pyConnect = (targets: [string, number][]) => py`import json, socket, time
out = []
for host, port in ${JSON.stringify(targets)}:
    started = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=1).close(); err = 0
    except OSError as e:
        err = e.errno if e.errno is not None else str(e)
    out.append([host, port, err, round(time.monotonic() - started, 3)])
print(json.dumps(out))`;

/** JavaScript: the same with net.connect. */
const jsConnect = (targets: [string, number][]) => `const net = require('net');
const out = [];
for (const [host, port] of ${JSON.stringify(targets)}) {
  const started = performance.now();
  const code = await new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1000 });
    s.once('connect', () => { s.destroy(); resolve(0); });
    s.once('timeout', () => { s.destroy(); resolve('ETIMEDOUT'); });
    s.once('error', (e) => resolve(e.code));
  });
  out.push([host, port, code, Math.round(performance.now() - started)]);
}
console.log(JSON.stringify(out));`;

describe('the host from inside', () => {
  it("cannot reach a port the host listens on at 127.0.0.1 (the server's own API port, say)", async () => {
    // Attack: the runcell API (or any admin service) often listens on the host's loopback.
    // The test app itself listens on no TCP port, so stand one up and try to reach it, from
    // Python and JavaScript, at 127.0.0.1, localhost and the host's other addresses.
    // Containment: the sandbox's loopback is its own: ECONNREFUSED; the host's other
    // addresses have no route (ENETUNREACH). The host server never sees a connection.
    const bystander = await Bystander.start(app);
    const server = await hostServer({ port: 0, host: '127.0.0.1' });
    try {
      expect(await hostCanConnect({ port: server.port, host: '127.0.0.1' })).toBe(true);
      const before = server.connections();
      const hostAddresses = Object.values(networkInterfaces())
        .flat()
        .filter((i) => i && i.family === 'IPv4' && !i.internal)
        .map((i) => i!.address);
      const targets: [string, number][] = [
        ['127.0.0.1', server.port],
        ['localhost', server.port],
        ['127.0.0.2', server.port],
        ...hostAddresses.map((a): [string, number] => [a, server.port]),
      ];
      const nb = notebookId('apiport');
      const { data } = await runJson<[string, number, number | string, number][]>(
        app,
        nb,
        pyConnect(targets),
      );
      expect(data.map(([host, , err]) => [host, err])).toEqual([
        ['127.0.0.1', ECONNREFUSED],
        // No /etc/hosts inside: "localhost" does not resolve (EAI_NONAME-style failure).
        ['localhost', expect.anything()],
        ['127.0.0.2', ECONNREFUSED],
        ...hostAddresses.map((a) => [a, ENETUNREACH]),
      ]);
      expect(data[1]![2]).not.toBe(0);
      const js = await run(app, nb, [jsConnect([['127.0.0.1', server.port]])], { language: 'javascript' });
      expect(JSON.parse(js.results[0]!.output).map((r: unknown[]) => r[2])).toEqual(['ECONNREFUSED']);
      expect(server.connections() - before).toBe(0);
    } finally {
      await server.close();
    }
    await bystander.check();
  });

  it("cannot reach the host's loopback services (Redis, PostgreSQL, MariaDB, NATS, ...) over IPv4 or IPv6", async () => {
    // Attack: databases on the host's loopback often trust local connections. This machine
    // runs several; try each, and ::1. Containment: ECONNREFUSED from the private loopback.
    const bystander = await Bystander.start(app);
    const ports = [6379, 5432, 3306, 4222, 1883, 5672];
    const running = [];
    for (const port of ports) if (await hostCanConnect({ port, host: '127.0.0.1' })) running.push(port);
    // This machine is expected to run at least Redis and PostgreSQL.
    expect(running).toEqual(expect.arrayContaining([6379, 5432]));
    const targets: [string, number][] = [
      ...running.map((p): [string, number] => ['127.0.0.1', p]),
      ['::1', 6379],
    ];
    const nb = notebookId('loopback');
    const { data } = await runJson<[string, number, number, number][]>(app, nb, pyConnect(targets));
    expect(data.map(([host, port, err]) => [host, port, err])).toEqual(
      targets.map(([host, port]) => [host, port, ECONNREFUSED]),
    );
    const js = await run(app, nb, [jsConnect([['127.0.0.1', 6379]])], { language: 'javascript' });
    expect(JSON.parse(js.results[0]!.output).map((r: unknown[]) => r[2])).toEqual(['ECONNREFUSED']);
    await bystander.check();
  });

  it("cannot reach the host's unix sockets: by path (PostgreSQL, D-Bus, Docker) or in the abstract namespace", async () => {
    // Attack: unix sockets skip the network entirely. Paths: the sandbox has no /run or /var,
    // so none exist (ENOENT). The abstract namespace belongs to the network namespace: a host
    // process listening on "\0name" is invisible inside (ECONNREFUSED).
    const bystander = await Bystander.start(app);
    expect(existsSync('/run/postgresql/.s.PGSQL.5432')).toBe(true);
    const abstract = `\0runcell-sec-${randomUUID()}`;
    const server = await hostServer({ path: abstract });
    try {
      expect(await hostCanConnect({ path: abstract })).toBe(true);
      const before = server.connections();
      const paths = [
        '/run/postgresql/.s.PGSQL.5432',
        '/var/run/postgresql/.s.PGSQL.5432',
        '/run/mysqld/mysqld.sock',
        '/var/run/docker.sock',
        '/run/dbus/system_bus_socket',
        '/run/systemd/private',
      ];
      const nb = notebookId('unixsock');
      const { data } = await runJson<{ paths: [string, number][]; abstract: number; run: string[] }>(
        app,
        nb,
        py`import json, os, socket
def attempt(addr):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(addr); return 0
    except OSError as e:
        return e.errno
    finally:
        s.close()
print(json.dumps({'paths': [[p, attempt(p)] for p in ${JSON.stringify(paths)}],
                  'abstract': attempt(${JSON.stringify(abstract)}),
                  'run': [d for d in ['/run', '/var/run', '/var'] if os.path.exists(d)]}))`,
      );
      expect(data).toEqual({
        paths: paths.map((p) => [p, ENOENT]),
        abstract: ECONNREFUSED,
        run: [],
      });
      const js = await run(
        app,
        nb,
        [
          `const net = require('net');
const code = await new Promise((resolve) => {
  const s = net.connect({ path: ${JSON.stringify(abstract)} });
  s.once('connect', () => { s.destroy(); resolve('connected'); });
  s.once('error', (e) => resolve(e.code));
});
console.log(code)`,
        ],
        { language: 'javascript' },
      );
      expect(js.results[0]!.output).toBe('ECONNREFUSED\n');
      expect(server.connections() - before).toBe(0);
    } finally {
      await server.close();
    }
    await bystander.check();
  });

  it('cannot be reached from the host: a port it listens on stays private', async () => {
    // Attack (the other way round): open a listening socket inside, hoping a host process or
    // another notebook will talk to it (or to exfiltrate through something that connects to
    // localhost). Containment: it listens on the sandbox's own loopback: the host cannot reach
    // it.
    const bystander = await Bystander.start(app);
    const port = 40000 + Math.floor(Math.random() * 20000);
    expect(await hostCanConnect({ port, host: '127.0.0.1' })).toBe(false);
    const nb = notebookId('listen');
    const status = await run(app, nb, [
      py`import socket
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(('0.0.0.0', ${port}))
listener.listen()
print('listening')`,
    ]);
    expect(status.results[0]!.output).toBe('listening\n');
    expect(await hostCanConnect({ port, host: '127.0.0.1' })).toBe(false);
    // A second notebook cannot reach it either: every sandbox has its own loopback.
    const other = await runJson<[string, number, number][]>(
      app,
      notebookId('neighbour'),
      pyConnect([['127.0.0.1', port]]),
    );
    expect(other.data[0]![2]).toBe(ECONNREFUSED);
    await bystander.check();
  });
});

describe('the outside world', () => {
  it('has no route out: TCP and UDP to TEST-NET addresses fail at once with ENETUNREACH', async () => {
    // Attack: exfiltration or command and control. Only reserved documentation addresses are
    // used (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32): nothing real could
    // be reached even if this failed. Containment: the namespace has no interface but lo and
    // no default route: the connect fails immediately (not after the 1 s timeout).
    const bystander = await Bystander.start(app);
    const nb = notebookId('outside');
    const targets: [string, number][] = [
      ['192.0.2.1', 80],
      ['198.51.100.7', 443],
      ['203.0.113.9', 22],
      ['2001:db8::1', 80],
    ];
    const { data } = await runJson<[string, number, number, number][]>(app, nb, pyConnect(targets));
    for (const [host, port, err, seconds] of data) {
      expect({ host, port, err }).toEqual({ host, port, err: ENETUNREACH });
      expect(seconds).toBeLessThan(0.5);
    }
    const udp = await runJson<{ udp: number; ifaces: string[] }>(
      app,
      nb,
      py`import json, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b'x', ('192.0.2.1', 53)); udp = 0
except OSError as e:
    udp = e.errno
print(json.dumps({'udp': udp, 'ifaces': sorted(n for _, n in socket.if_nameindex())}))`,
    );
    expect(udp.data).toEqual({ udp: ENETUNREACH, ifaces: ['lo'] });
    const js = await run(app, nb, [jsConnect([['192.0.2.1', 80]])], { language: 'javascript' });
    const [[, , code, ms]] = JSON.parse(js.results[0]!.output);
    expect(code).toBe('ENETUNREACH');
    expect(ms).toBeLessThan(500);
    await bystander.check();
  });

  it('cannot resolve names: no resolver configuration, and no server to ask', async () => {
    // Attack: DNS is a classic covert channel (and the first step to anything else).
    // Containment: no /etc/resolv.conf or /etc/hosts inside; glibc falls back to a name
    // server on the sandbox's own loopback, which refuses: a quick EAI_AGAIN / EAI_NONAME.
    const bystander = await Bystander.start(app);
    const nb = notebookId('dns');
    const { data } = await runJson<{ err: number; seconds: number; files: string[] }>(
      app,
      nb,
      py`import json, os, socket, time
started = time.monotonic()
try:
    socket.getaddrinfo('example.com', 80); err = 0
except socket.gaierror as e:
    err = e.errno
print(json.dumps({'err': err, 'seconds': time.monotonic() - started,
                  'files': [f for f in ['/etc/resolv.conf', '/etc/hosts', '/etc/nsswitch.conf'] if os.path.exists(f)]}))`,
    );
    expect([EAI_AGAIN, EAI_NONAME]).toContain(data.err);
    expect(data.seconds).toBeLessThan(2);
    expect(data.files).toEqual([]);
    const js = await run(
      app,
      nb,
      [
        `const dns = require('dns');
const code = await new Promise((resolve) => dns.lookup('example.com', (e) => resolve(e ? e.code : 'resolved')));
const code2 = await new Promise((resolve) => dns.resolve4('example.com', (e) => resolve(e ? e.code : 'resolved')));
console.log(JSON.stringify([code, code2]))`,
      ],
      { language: 'javascript', timeout: 10 },
    );
    const [lookup, resolve4] = JSON.parse(js.results[0]!.output);
    expect(['EAI_AGAIN', 'ENOTFOUND']).toContain(lookup);
    expect(['ECONNREFUSED', 'ETIMEOUT', 'ESERVFAIL', 'EREFUSED']).toContain(resolve4);
    await bystander.check();
  });

  it('cannot open raw or packet sockets, or bind privileged ports', async () => {
    // Attack: raw and packet sockets forge traffic and sniff; binding below 1024 impersonates
    // services. Containment: no CAP_NET_RAW / CAP_NET_BIND_SERVICE: EPERM (1) for raw and
    // packet sockets, EACCES (13) for ICMP datagram sockets (ping_group_range) and port 80.
    const bystander = await Bystander.start(app);
    const { data } = await runJson<Record<string, number | string>>(
      app,
      notebookId('raw'),
      py`import json, socket
out = {}
for name, args in [('packet', (socket.AF_PACKET, socket.SOCK_RAW, 0)),
                   ('raw icmp', (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                   ('raw tcp', (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)),
                   ('ping', (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP))]:
    try:
        socket.socket(*args).close(); out[name] = 'opened'
    except OSError as e:
        out[name] = e.errno
s = socket.socket()
try:
    s.bind(('127.0.0.1', 80)); out['bind 80'] = 'bound'
except OSError as e:
    out['bind 80'] = e.errno
print(json.dumps(out))`,
    );
    expect(data).toEqual({ packet: 1, 'raw icmp': 1, 'raw tcp': 1, ping: 13, 'bind 80': 13 });
    await bystander.check();
  });
});
