/**
 * The benchmarks' peer: Debian's Jupyter Server with ipykernel, started on 127.0.0.1 with a free
 * port, a token, a temporary root and Jupyter directories of its own, and driven over its REST API
 * (kernels) and channels WebSocket (messaging protocol v5, JSON frames).
 *
 * `nodelay: true` turns Nagle off on both ends of the channels socket. The client end (ws) already
 * sets TCP_NODELAY, as browsers do; Tornado leaves it off on a websocket once the upgrade response
 * is written, so a reply frame can wait for the client's delayed ACK (~40 ms). Jupyter has no
 * setting for it: a jupyter_server_config.py in the server's own JUPYTER_CONFIG_DIR wraps
 * ZMQChannelsHandler.open to call Tornado's WebSocketHandler.set_nodelay(True).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

const NODELAY_CONFIG = `# Written by runcell's benchmarks: TCP_NODELAY on every kernel channels websocket.
from jupyter_server.services.kernels.handlers import ZMQChannelsHandler

_open = ZMQChannelsHandler.open


def _open_nodelay(self, *args, **kwargs):
    self.set_nodelay(True)
    return _open(self, *args, **kwargs)


ZMQChannelsHandler.open = _open_nodelay
`;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export class JupyterServer {
  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly base: string,
    private readonly token: string,
  ) {}

  static async start(opts: { nodelay: boolean }): Promise<JupyterServer> {
    const dir = mkdtempSync(join(tmpdir(), 'runcell-bench-jupyter-'));
    for (const sub of ['root', 'config', 'data', 'runtime', 'ipython']) mkdirSync(join(dir, sub));
    if (opts.nodelay) writeFileSync(join(dir, 'config', 'jupyter_server_config.py'), NODELAY_CONFIG);
    const port = await freePort();
    const token = randomBytes(24).toString('hex');
    const child = spawn(
      '/usr/bin/python3',
      [
        '-m',
        'jupyter_server',
        '--ServerApp.ip=127.0.0.1',
        `--ServerApp.port=${port}`,
        '--ServerApp.port_retries=0',
        `--ServerApp.token=${token}`,
        '--ServerApp.open_browser=False',
        `--ServerApp.root_dir=${join(dir, 'root')}`,
        '--ServerApp.log_level=WARN',
        '--allow-root', // the suite runs as root, as runcell does to drop kernels to pool uids
      ],
      {
        detached: true, // its own process group, killed as one in stop()
        stdio: ['ignore', 'ignore', 'pipe'],
        env: {
          PATH: '/usr/bin:/bin',
          HOME: dir,
          LANG: 'C.UTF-8',
          JUPYTER_CONFIG_DIR: join(dir, 'config'),
          JUPYTER_DATA_DIR: join(dir, 'data'),
          JUPYTER_RUNTIME_DIR: join(dir, 'runtime'),
          IPYTHONDIR: join(dir, 'ipython'),
          PYDEVD_DISABLE_FILE_VALIDATION: '1',
        },
      },
    );
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    const server = new JupyterServer(child, dir, `http://127.0.0.1:${port}`, token);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`jupyter_server exited: ${stderr}`);
      try {
        if ((await server.api('GET', '/api/kernels')).ok) return server;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await server.stop();
        throw new Error(`jupyter_server did not start: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private api(method: string, path: string): Promise<Response> {
    return fetch(`${this.base}${path}`, { method, headers: { authorization: `token ${this.token}` } });
  }

  /** POST /api/kernels: an ipykernel from the system's python3 kernelspec. */
  async startKernel(): Promise<string> {
    const res = await this.api('POST', '/api/kernels');
    if (!res.ok) throw new Error(`POST /api/kernels: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { id: string }).id;
  }

  async deleteKernel(id: string): Promise<void> {
    const res = await this.api('DELETE', `/api/kernels/${id}`);
    if (!res.ok) throw new Error(`DELETE /api/kernels/${id}: ${res.status}`);
  }

  async connect(kernelId: string, nodelay: boolean): Promise<JupyterChannels> {
    const session = randomUUID();
    const socket = new WebSocket(
      `${this.base.replace('http', 'ws')}/api/kernels/${kernelId}/channels?session_id=${session}`,
      {
        headers: { authorization: `token ${this.token}` },
      },
    );
    await new Promise<void>((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    });
    if (nodelay) (socket as unknown as { _socket: import('node:net').Socket })._socket.setNoDelay(true);
    return new JupyterChannels(socket, session);
  }

  /** SIGTERM lets the server shut its kernels down (they run in sessions of their own); then the group is killed. */
  async stop(): Promise<void> {
    const pid = this.child.pid!;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    if (this.child.exitCode === null) {
      process.kill(-pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // the group is gone
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

interface Message {
  header: { msg_id: string; msg_type: string };
  parent_header: { msg_id?: string };
  channel: string;
  content: { execution_state?: string; status?: string; ename?: string; evalue?: string };
}

/** One kernel's channels socket: execute a cell and wait for its `status: idle` on iopub. */
export class JupyterChannels {
  private pending = new Map<
    string,
    { resolve: () => void; reject: (e: Error) => void; onStream?: () => void; error?: string }
  >();

  constructor(
    private readonly socket: WebSocket,
    private readonly session: string,
  ) {
    socket.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as Message;
      const waiter = this.pending.get(msg.parent_header.msg_id ?? '');
      if (!waiter) return;
      if (msg.channel === 'shell' && msg.header.msg_type === 'execute_reply' && msg.content.status !== 'ok')
        waiter.error = `${msg.content.ename}: ${msg.content.evalue}`;
      if (msg.channel === 'iopub' && msg.header.msg_type === 'stream') waiter.onStream?.();
      if (
        msg.channel === 'iopub' &&
        msg.header.msg_type === 'status' &&
        msg.content.execution_state === 'idle'
      ) {
        this.pending.delete(msg.parent_header.msg_id!);
        if (waiter.error) waiter.reject(new Error(waiter.error));
        else waiter.resolve();
      }
    });
  }

  /** Runs `code`; `onStream` is called on each of its iopub `stream` messages (stdout, stderr). */
  execute(code: string, onStream?: () => void): Promise<void> {
    const msgId = randomUUID();
    return new Promise((resolve, reject) => {
      this.pending.set(msgId, { resolve, reject, onStream });
      this.socket.send(
        JSON.stringify({
          header: {
            msg_id: msgId,
            msg_type: 'execute_request',
            username: 'bench',
            session: this.session,
            date: new Date().toISOString(),
            version: '5.3',
          },
          parent_header: {},
          metadata: {},
          content: {
            code,
            silent: false,
            store_history: true,
            user_expressions: {},
            allow_stdin: false,
            stop_on_error: true,
          },
          channel: 'shell',
          buffers: [],
        }),
      );
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.close();
    });
  }
}
