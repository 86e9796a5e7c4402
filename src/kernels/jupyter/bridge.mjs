// runcell Jupyter bridge.
//
// Runs inside the sandbox, next to the Jupyter kernel it starts, as
//   node --input-type=module -e <this file's contents> <config JSON>
// with config = { zeromq: <absolute path of zeromq's entry>, spec: { name, argv, env,
// interruptMode, resourceDir } }. The server never touches the kernel's sockets (a cell could
// swap one for a link to a host socket): it only speaks runcell's framed protocol to this bridge,
// on fd 3 (requests) and fd 4 (events), see src/kernels/protocol.ts.
//
// Towards the kernel it is a Jupyter client (messaging protocol 5.3) over ZeroMQ ipc sockets
// under a private directory in /tmp, with an HMAC-SHA256 key of its own that signs what it
// sends and checks what it receives. It exits when the kernel does, and kills the kernel when
// the server goes away.

import { spawn } from 'node:child_process';
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const REQUEST_FD = 3;
const EVENT_FD = 4;
const MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** Stream text is coalesced into one frame until it reaches this size (or the loop turns). */
const FLUSH_BYTES = 64 * 1024;
/** Bounds on what a result carries besides the cell's output budget (as the Python driver). */
const MAX_VALUE_BYTES = 8 << 20;
const MAX_TRACEBACK_CHARS = 1 << 20;
/** A reply whose idle status never comes (iopub dropped it) still ends the cell after this. */
const IDLE_GRACE_MS = 1000;
const DELIMITER = '<IDS|MSG>';
const LAST_WORDS_CHARS = 4096;
// CSI sequences (colours, cursor moves) in IPython's tracebacks: runcell shows plain text.
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]/g;

const config = JSON.parse(process.argv[1]);
const spec = config.spec;
const zmqModule = await import(pathToFileURL(config.zeromq).href);
const zmq = zmqModule.default ?? zmqModule;

// ---------------------------------------------------------------------------------------------
// Events out (fd 4)

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
let dead = false;

function writeFrame(message) {
  if (dead) return;
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  let offset = 0;
  while (offset < frame.length) {
    try {
      offset += fs.writeSync(EVENT_FD, frame, offset, frame.length - offset);
    } catch (error) {
      if (error && error.code === 'EAGAIN') {
        Atomics.wait(sleepCell, 0, 0, 1);
        continue;
      }
      dead = true; // the server is gone
      shutdown(1);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The kernel process and its connection

const dir = fs.mkdtempSync('/tmp/jupyter-'); // 0700: the sockets are the bridge's and the kernel's
const key = randomBytes(32).toString('hex');
const ip = path.join(dir, 'kernel');
const PORTS = { shell_port: 1, iopub_port: 2, stdin_port: 3, control_port: 4, hb_port: 5 };
const connectionFile = path.join(dir, 'connection.json');
fs.writeFileSync(
  connectionFile,
  JSON.stringify({
    ...PORTS,
    ip,
    key,
    transport: 'ipc',
    signature_scheme: 'hmac-sha256',
    kernel_name: spec.name,
  }),
  { mode: 0o600 },
);

const fill = (arg) =>
  arg.replaceAll('{connection_file}', connectionFile).replaceAll('{resource_dir}', spec.resourceDir);
// fds 3 and 4 are inherited without close-on-exec: cover them with /dev/null in the kernel, so
// its code cannot write frames to the server (only the bridge speaks for it).
const devNull = fs.openSync('/dev/null', 'r+');
const kernel = spawn(fill(spec.argv[0]), spec.argv.slice(1).map(fill), {
  // IPython keeps its profile (history database, startup files) in /tmp, not in the workspace.
  env: { ...process.env, IPYTHONDIR: path.join(dir, 'ipython'), ...spec.env },
  stdio: ['ignore', 'pipe', 'pipe', devNull, devNull],
  // Its own process group, signalled as a whole on interrupt (as jupyter_client does).
  detached: true,
});
fs.closeSync(devNull);

// The kernel's own stdout and stderr are its terminal in Jupyter: logs, crash reports, and
// (ipykernel) a copy of what subprocesses print, which iopub already carries. Only their tail
// is kept, as the kernel's last words should it die.
let lastWords = '';
const keep = (chunk) => (lastWords = (lastWords + chunk.toString('utf8')).slice(-LAST_WORDS_CHARS));
kernel.stdout.on('data', keep);
kernel.stderr.on('data', keep);

kernel.on('error', (error) => {
  fs.writeSync(2, `runcell jupyter bridge: cannot start ${spec.argv[0]}: ${error.message}\n`);
  shutdown(1);
});
kernel.on('exit', (code, signal) => {
  flushPending();
  const words = lastWords.trim() ? `:\n${lastWords.trim()}` : '';
  fs.writeSync(2, `runcell jupyter bridge: the kernel exited (${signal ?? `code ${code}`})${words}\n`);
  shutdown(code ?? 1);
});

function shutdown(code) {
  try {
    process.kill(-kernel.pid, 'SIGKILL');
  } catch {}
  process.exit(code);
}

// ---------------------------------------------------------------------------------------------
// Jupyter messaging

const session = randomUUID();
const socket = (Type, port, options = {}) => {
  const s = new Type({ linger: 0, ...options });
  s.connect(`ipc://${ip}-${port}`);
  return s;
};
// stdin must share shell's identity: the kernel sends input_request to the shell requester.
const shell = socket(zmq.Dealer, PORTS.shell_port, { routingId: session });
const stdin = socket(zmq.Dealer, PORTS.stdin_port, { routingId: session });
const control = socket(zmq.Dealer, PORTS.control_port);
const iopub = socket(zmq.Subscriber, PORTS.iopub_port, { receiveHighWaterMark: 0 });
iopub.subscribe();

function sign(parts) {
  const hmac = createHmac('sha256', key);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

// zeromq allows one send in flight per socket.
const sending = new Map();
function send(channel, msgType, content, parent = {}) {
  const header = {
    msg_id: randomUUID(),
    session,
    username: 'runcell',
    date: new Date().toISOString(),
    msg_type: msgType,
    version: '5.3',
  };
  const parts = [header, parent, {}, content].map((x) => Buffer.from(JSON.stringify(x)));
  const frames = [DELIMITER, sign(parts).toString('hex'), ...parts];
  const previous = sending.get(channel) ?? Promise.resolve();
  const next = previous.then(() => channel.send(frames));
  sending.set(
    channel,
    next.catch(() => {}),
  );
  return header;
}

/** A received message, or null when it is malformed or its signature is not ours. */
function parse(frames) {
  const at = frames.findIndex((f) => f.length === DELIMITER.length && f.toString() === DELIMITER);
  if (at < 0 || frames.length < at + 6) return null;
  const signature = Buffer.from(frames[at + 1].toString(), 'hex');
  const expected = sign(frames.slice(at + 2, at + 6));
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return null;
  try {
    const [header, parent, metadata, content] = frames.slice(at + 2, at + 6).map((f) => JSON.parse(f));
    if (!isObject(header) || !isObject(parent) || !isObject(content)) return null;
    return { header, parent, metadata: isObject(metadata) ? metadata : {}, content };
  } catch {
    return null;
  }
}

const isObject = (x) => typeof x === 'object' && x !== null && !Array.isArray(x);

async function receive(channel, handle) {
  try {
    for await (const frames of channel) {
      const message = parse(frames);
      if (message !== null) handle(message);
    }
  } catch (error) {
    if (!channel.closed) {
      fs.writeSync(2, `runcell jupyter bridge: receiving failed: ${error && error.message}\n`);
      shutdown(1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Start-up: ready once the kernel answers kernel_info and iopub is known to be connected (a
// SUB socket misses what is published before it joins, such as a cell's idle status).

const infoRequests = new Set();
let info = null;
let iopubLive = false;
let ready = false;

function requestInfo() {
  infoRequests.add(send(shell, 'kernel_info_request', {}).msg_id);
}

function checkReady() {
  if (ready || info === null) return;
  if (!iopubLive) {
    setTimeout(requestInfo, 50);
    return;
  }
  ready = true;
  const language = isObject(info.language_info) ? info.language_info : {};
  writeFrame({
    type: 'ready',
    language: typeof language.name === 'string' ? language.name : spec.name,
    version: typeof language.version === 'string' ? language.version : '',
  });
  startNext();
}

// ---------------------------------------------------------------------------------------------
// Cells

/** The running cell, see run(). */
let current = null;
const queue = [];
/** Stream text not yet sent: { cell, name, parts, size }. */
let pending = null;
let flushScheduled = false;

function flushPending() {
  const p = pending;
  pending = null;
  if (p === null) return;
  const text = p.parts.length === 1 ? p.parts[0] : p.parts.join('');
  // Keep every frame far below MAX_FRAME_BYTES (a UTF-16 unit is at most 3 UTF-8 bytes).
  const step = Math.floor(MAX_FRAME_BYTES / 8);
  for (let start = 0; start < text.length;) {
    let end = Math.min(text.length, start + step);
    if (end < text.length) {
      const code = text.charCodeAt(end - 1);
      if (code >= 0xd800 && code <= 0xdbff) end -= 1; // do not split a surrogate pair
    }
    writeFrame({ type: 'stream', id: p.cell.id, name: p.name, text: text.slice(start, end) });
    start = end;
  }
}

function scheduledFlush() {
  flushScheduled = false;
  flushPending();
}

/** Takes `size` bytes out of the cell's budget if they fit, else counts them as dropped. */
function take(cell, size) {
  if (size > cell.max - cell.bytes) {
    cell.dropped += size;
    return false;
  }
  cell.bytes += size;
  return true;
}

function emitStream(cell, name, text) {
  if (text.length === 0) return;
  let size = Buffer.byteLength(text, 'utf8');
  const room = cell.max - cell.bytes;
  if (size > room) {
    // Keep the prefix that fits, cut on a UTF-8 character boundary.
    const bytes = Buffer.from(text, 'utf8');
    let end = Math.max(0, room);
    while (end > 0 && (bytes[end] & 0xc0) === 0x80) end -= 1;
    cell.dropped += size - end;
    if (end === 0) return;
    text = bytes.toString('utf8', 0, end);
    size = end;
  }
  cell.bytes += size;
  if (pending !== null && (pending.cell !== cell || pending.name !== name)) flushPending();
  if (pending === null) pending = { cell, name, parts: [text], size };
  else {
    pending.parts.push(text);
    pending.size += size;
  }
  if (pending.size >= FLUSH_BYTES) flushPending();
  else if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(scheduledFlush);
  }
}

function emitDisplay(cell, content) {
  if (!isObject(content.data)) return;
  const metadata = isObject(content.metadata) ? content.metadata : {};
  // Counted as the server counts it; whole or not at all.
  const size = Buffer.byteLength(
    JSON.stringify({ output_type: 'display_data', data: content.data, metadata }),
  );
  if (size > MAX_FRAME_BYTES / 2) {
    cell.dropped += size;
    return;
  }
  if (!take(cell, size)) return;
  flushPending(); // after what the cell printed before it
  writeFrame({ type: 'display', id: cell.id, data: content.data, metadata });
}

function startNext() {
  if (!ready || current !== null || queue.length === 0) return;
  run(queue.shift());
}

function run(request) {
  const max =
    Number.isSafeInteger(request.maxOutputBytes) && request.maxOutputBytes >= 0
      ? request.maxOutputBytes
      : Infinity;
  const header = send(shell, 'execute_request', {
    code: typeof request.code === 'string' ? request.code : '',
    silent: false,
    store_history: true,
    user_expressions: {},
    allow_stdin: true,
    stop_on_error: false,
  });
  current = {
    id: request.id,
    msgId: header.msg_id,
    max,
    bytes: 0,
    dropped: 0,
    started: false, // the kernel published execute_input: its SIGINT handler is in place
    interrupted: false,
    input: null, // header of the input_request waiting for its reply
    result: null,
    error: null,
    reply: null,
    idle: false,
    idleTimer: null,
  };
}

function maybeFinish(cell) {
  if (cell.reply === null) {
    // Idle without a reply: a SIGINT landed in ipykernel's own code around the cell and cut its
    // handler short. Its loop goes on; end the cell rather than wait for a reply never sent.
    if (cell.idle) cell.idleTimer ??= setTimeout(() => finishUnanswered(cell), IDLE_GRACE_MS);
    return;
  }
  if (cell.idle) finish(cell);
  else cell.idleTimer ??= setTimeout(() => finish(cell), IDLE_GRACE_MS);
}

function finishUnanswered(cell) {
  if (current !== cell || cell.reply !== null) return;
  cell.reply = cell.interrupted
    ? { status: 'error', ename: 'KeyboardInterrupt', evalue: '', traceback: ['KeyboardInterrupt'] }
    : {
        status: 'error',
        ename: 'KernelError',
        evalue: 'the kernel went idle without replying',
        traceback: [],
      };
  finish(cell);
}

function finish(cell) {
  if (current !== cell) return;
  clearTimeout(cell.idleTimer);
  clearInterval(cell.resignal);
  flushPending();
  current = null;
  let message;
  if (cell.reply.status === 'ok') {
    message = { type: 'result', id: cell.id, status: 'ok', value: null };
    const result = cell.result;
    if (result !== null && isObject(result.data)) {
      const plain = result.data['text/plain'];
      if (typeof plain === 'string') {
        const limit = Math.min(cell.max, MAX_VALUE_BYTES);
        const size = Buffer.byteLength(plain);
        if (size > limit) {
          const cut = Buffer.from(plain)
            .subarray(0, limit)
            .toString('utf8')
            .replace(/\uFFFD$/, '');
          message.value = cut;
          cell.dropped += size - Buffer.byteLength(cut);
        } else message.value = plain;
      }
      if (Object.keys(result.data).some((mime) => mime !== 'text/plain')) {
        const size = Buffer.byteLength(JSON.stringify(result.data));
        if (size <= Math.min(cell.max - cell.bytes, MAX_FRAME_BYTES / 2)) {
          message.data = result.data;
          message.metadata = isObject(result.metadata) ? result.metadata : {};
        } else cell.dropped += size;
      }
    }
  } else {
    const source = cell.error ?? cell.reply;
    const aborted = cell.reply.status === 'aborted';
    message = {
      type: 'result',
      id: cell.id,
      status: 'error',
      ename: aborted ? 'Aborted' : capped(source.ename, 'Error'),
      evalue: aborted ? 'the kernel did not run the cell' : capped(source.evalue, ''),
      traceback: aborted ? [] : plainTraceback(source.traceback),
    };
    if (cell.interrupted) message.interrupted = true;
  }
  if (cell.dropped > 0) message.dropped = cell.dropped;
  writeFrame(message);
  startNext();
}

const capped = (x, fallback) => (typeof x === 'string' ? x.slice(0, MAX_TRACEBACK_CHARS) : fallback);

/** The traceback's entries (as a Jupyter frontend prints them) in plain text, within bounds. */
function plainTraceback(traceback) {
  if (!Array.isArray(traceback)) return [];
  const entries = [];
  let budget = MAX_TRACEBACK_CHARS;
  for (const entry of traceback) {
    if (typeof entry !== 'string') continue;
    if (budget <= 0) {
      entries.push('… [traceback truncated]');
      break;
    }
    const plain = entry.replace(ANSI, '').slice(0, budget);
    budget -= plain.length;
    entries.push(plain);
  }
  return entries;
}

const RESIGNAL_MS = 500;

function signalKernel() {
  try {
    process.kill(-kernel.pid, 'SIGINT');
  } catch {}
}

function interrupt(id) {
  const cell = current;
  if (cell === null || cell.id !== id) {
    const index = queue.findIndex((request) => request.id === id);
    if (index >= 0) {
      queue.splice(index, 1);
      writeFrame({
        type: 'result',
        id,
        status: 'error',
        ename: 'KeyboardInterrupt',
        evalue: '',
        traceback: ['KeyboardInterrupt'],
        interrupted: true,
      });
    }
    return;
  }
  cell.interrupted = true;
  if (spec.interruptMode === 'message') {
    send(control, 'interrupt_request', {});
    return;
  }
  // Not before execute_input: until then ipykernel may be installing its SIGINT handler, and a
  // KeyboardInterrupt raised in its own message loop leaves it deaf to every later request.
  if (cell.started) startSignalling(cell);
}

function startSignalling(cell) {
  signalKernel();
  // A SIGINT that lands in the kernel's own code around the cell (ipykernel swallows it there)
  // is lost: repeat it until the cell ends, as jupyter_client users press Ctrl-C again.
  cell.resignal ??= setInterval(signalKernel, RESIGNAL_MS);
}

function onIopub(message) {
  const parentId = message.parent.msg_id;
  if (!ready && infoRequests.has(parentId)) {
    iopubLive = true;
    checkReady();
    return;
  }
  const cell = current;
  if (cell === null || parentId !== cell.msgId) return;
  const { content } = message;
  switch (message.header.msg_type) {
    case 'execute_input':
      if (!cell.started) {
        cell.started = true;
        if (cell.interrupted && spec.interruptMode !== 'message') startSignalling(cell);
      }
      return;
    case 'stream':
      if (typeof content.text === 'string') {
        emitStream(cell, content.name === 'stdout' ? 'stdout' : 'stderr', content.text);
      }
      return;
    case 'display_data':
    case 'update_display_data':
      emitDisplay(cell, content);
      return;
    case 'execute_result':
      cell.result = content;
      return;
    case 'error':
      cell.error = content;
      return;
    case 'status':
      if (content.execution_state === 'idle') {
        cell.idle = true;
        maybeFinish(cell);
      }
      return;
  }
}

function onShell(message) {
  const parentId = message.parent.msg_id;
  const type = message.header.msg_type;
  if (type === 'kernel_info_reply' && infoRequests.has(parentId)) {
    info ??= message.content;
    checkReady();
    return;
  }
  const cell = current;
  if (type === 'execute_reply' && cell !== null && parentId === cell.msgId && cell.reply === null) {
    clearTimeout(cell.idleTimer); // it was only waiting for this reply
    cell.idleTimer = null;
    cell.reply = message.content;
    maybeFinish(cell);
  }
}

function onStdin(message) {
  const cell = current;
  if (message.header.msg_type !== 'input_request' || cell === null) return;
  if (message.parent.msg_id !== cell.msgId) return;
  flushPending(); // the prompt goes after what the cell printed before it
  cell.input = message.header;
  const prompt = typeof message.content.prompt === 'string' ? message.content.prompt : '';
  writeFrame({ type: 'input_request', id: cell.id, prompt, password: message.content.password === true });
}

function onInputReply(request) {
  const cell = current;
  if (cell === null || cell.id !== request.id || cell.input === null) return;
  const parent = cell.input;
  cell.input = null;
  if (typeof request.value === 'string') {
    send(stdin, 'input_reply', { value: request.value }, parent);
    return;
  }
  // No line to give: Jupyter's end-of-input, on which input() raises EOFError.
  if (typeof request.error === 'string') emitStream(cell, 'stderr', `${request.error}\n`);
  send(stdin, 'input_reply', { value: '\x04' }, parent);
}

// ---------------------------------------------------------------------------------------------
// Requests in (fd 3)

let chunks = [];
let buffered = 0;
function onData(chunk) {
  chunks.push(chunk);
  buffered += chunk.length;
  while (buffered >= 4) {
    if (chunks[0].length < 4) chunks = [Buffer.concat(chunks)];
    const length = chunks[0].readUInt32BE(0);
    if (length > MAX_FRAME_BYTES) return shutdown(1);
    if (buffered < 4 + length) return;
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    let request;
    try {
      request = JSON.parse(all.toString('utf8', 4, 4 + length));
    } catch {
      return shutdown(1);
    }
    const rest = all.subarray(4 + length);
    chunks = rest.length > 0 ? [rest] : [];
    buffered = rest.length;
    if (!isObject(request) || !Number.isSafeInteger(request.id)) continue;
    if (request.type === 'execute') {
      queue.push(request);
      startNext();
    } else if (request.type === 'interrupt') interrupt(request.id);
    else if (request.type === 'input_reply') onInputReply(request);
  }
}

const requests = new net.Socket({ fd: REQUEST_FD, readable: true, writable: false, allowHalfOpen: true });
requests.on('data', onData);
requests.on('end', () => shutdown(0));
requests.on('error', () => shutdown(1));

void receive(iopub, onIopub);
void receive(shell, onShell);
void receive(stdin, onStdin);
void receive(control, () => {});
requestInfo();
