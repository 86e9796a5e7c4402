// runcell JavaScript kernel driver.
//
// Runs inside the sandbox as one long-lived Node process per notebook, started as
//   node --max-old-space-size=<MB> --input-type=module -e <this file's contents>
// so it must stay a single self-contained module that imports only node: built-ins.
//
// Protocol (src/kernels/protocol.ts): requests arrive as frames on fd 3, events leave as frames
// on fd 4; a frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
//
// Threads:
//  - The main thread evaluates cells through an in-process inspector session
//    (Runtime.evaluate with replMode, which gives REPL semantics: re-declarable top-level
//    const/let/class and top-level await). It is the only writer of fd 4.
//  - A worker thread reads fd 3 and forwards requests to the main thread. Because the main
//    thread may be stuck in synchronous user code, the worker also handles interrupts itself,
//    with Runtime.terminateExecution on a session connected to the main thread.

import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import { createRequire } from 'node:module';
import { Session } from 'node:inspector';
import { Worker } from 'node:worker_threads';

const REQUEST_FD = 3;
const EVENT_FD = 4;
const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** Object group of the remote objects a cell's evaluation creates; released after each cell. */
const CELL_GROUP = 'runcell-cell';
/** Stream text is coalesced into one frame until it reaches this size or age. */
const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 20;
/** Bounds on the text of a result, which maxOutputBytes does not cover. */
const MAX_VALUE_CHARS = 1024 * 1024;
const MAX_EVALUE_CHARS = 64 * 1024;
const MAX_TRACEBACK_LINES = 200;
const MAX_TRACEBACK_CHARS = 256 * 1024;

const INTERRUPTED = {
  ename: 'Interrupted',
  evalue: 'Script execution was interrupted',
  traceback: ['Interrupted: Script execution was interrupted'],
};

// Keep our own references, so a cell that reassigns globals does not break the driver.
const { stringify } = JSON;
const writeSync = fs.writeSync;
const byteLength = Buffer.byteLength;
const bufferFrom = Buffer.from;
const now = performance.now.bind(performance);
const inspect = util.inspect;
const isNativeError = util.types.isNativeError;
const INSPECT_OPTIONS = { showProxy: true };
const DRIVER_URL = import.meta.url;

// ---------------------------------------------------------------------------------------------
// Events out (fd 4)

let dead = false;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function writeFrame(message) {
  if (dead) return;
  const body = bufferFrom(stringify(message), 'utf8');
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  let offset = 0;
  while (offset < frame.length) {
    try {
      offset += writeSync(EVENT_FD, frame, offset, frame.length - offset);
    } catch (error) {
      if (error && error.code === 'EAGAIN') {
        Atomics.wait(sleepCell, 0, 0, 1);
        continue;
      }
      // The server is gone (EPIPE, EBADF, ...): nothing left to report to.
      dead = true;
      process.exit(1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Output capture

/** The running cell: { id, max, bytes, dropped, done, objects }. */
let current = null;
/** Stream text not yet sent: { cell, name, parts, size, since }. */
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

function toText(chunk, encoding) {
  if (typeof chunk === 'string') {
    if (
      typeof encoding === 'string' &&
      encoding !== 'utf8' &&
      encoding !== 'utf-8' &&
      Buffer.isEncoding(encoding)
    ) {
      return bufferFrom(chunk, encoding).toString('utf8');
    }
    return chunk;
  }
  if (chunk instanceof Uint8Array) {
    return bufferFrom(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
  }
  return String(chunk);
}

function emitStream(name, chunk, encoding) {
  const cell = current;
  if (cell === null) return; // output with no running cell is dropped
  let text = toText(chunk, encoding);
  if (text.length === 0) return;
  let size = byteLength(text, 'utf8');
  const room = cell.max - cell.bytes;
  if (size > room) {
    if (room <= 0) {
      cell.dropped += size;
      return;
    }
    // Keep the prefix that fits, cut on a UTF-8 character boundary.
    const bytes = bufferFrom(text, 'utf8');
    let end = room;
    while (end > 0 && (bytes[end] & 0xc0) === 0x80) end -= 1;
    text = bytes.toString('utf8', 0, end);
    cell.dropped += size - end;
    size = end;
    if (size === 0) return;
  }
  cell.bytes += size;
  if (pending !== null && (pending.cell !== cell || pending.name !== name)) flushPending();
  if (pending === null) {
    pending = { cell, name, parts: [text], size, since: now() };
  } else {
    pending.parts.push(text);
    pending.size += size;
  }
  if (pending.size >= FLUSH_BYTES || now() - pending.since >= FLUSH_MS) {
    flushPending();
  } else if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(scheduledFlush);
  }
}

function captureWrite(name) {
  return function write(chunk, encoding, callback) {
    if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    emitStream(name, chunk, encoding);
    if (typeof callback === 'function') process.nextTick(callback);
    return true;
  };
}

process.stdout.write = captureWrite('stdout');
process.stderr.write = captureWrite('stderr');

// ---------------------------------------------------------------------------------------------
// display(): rich outputs, as IPython's display() in the Python kernel

const MIME_TYPE = /^[a-z]+\/[a-z0-9.+-]+$/i;
const isJsonMime = (mime) => mime === 'application/json' || mime.endsWith('+json');
const uint8ArrayToBase64 = (bytes) =>
  bufferFrom(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

/** A plain object whose keys are all MIME types: `{'text/html': '<b>hi</b>'}`. */
function isMimeBundle(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  const keys = Object.keys(value);
  return keys.length > 0 && keys.every((key) => MIME_TYPE.test(key));
}

/** The bundle as sent: binary data as base64, JSON types as they are, everything else text. */
function bundleData(bundle) {
  const data = {};
  for (const [mime, content] of Object.entries(bundle)) {
    if (content instanceof Uint8Array) data[mime] = uint8ArrayToBase64(content);
    else if (typeof content === 'string' || isJsonMime(mime)) data[mime] = content;
    else throw new TypeError(`display(): the ${mime} data must be a string or a Uint8Array`);
  }
  return data;
}

/**
 * display(value, ...): each value as a display output of the running cell. A MIME bundle is
 * shown as it is; any other value as the REPL would print it (util.inspect).
 */
function display(...values) {
  for (const value of values) {
    const data = isMimeBundle(value) ? bundleData(value) : { 'text/plain': inspectValue(value) };
    sendDisplay(data);
  }
}

/** Kept whole if it fits what is left of the cell's output limit, else a line says why. */
function sendDisplay(data) {
  const cell = current;
  if (cell === null) return; // after its cell ended: dropped, as stream output is
  const metadata = {};
  // Counted as the server counts it: the JSON of the nbformat output.
  const size = byteLength(stringify({ output_type: 'display_data', data, metadata }), 'utf8');
  const room = cell.max - cell.bytes;
  if (size > room) {
    const kinds =
      Object.keys(data)
        .filter((mime) => mime !== 'text/plain')
        .join(', ') || 'text/plain';
    emitStream(
      'stderr',
      `[${kinds} output not shown: ${size} bytes, more than the ${room} bytes left of the cell's output limit of ${cell.max} bytes]\n`,
    );
    cell.dropped += size;
    return;
  }
  cell.bytes += size;
  if (pending !== null) flushPending(); // the display goes after what the cell printed before it
  writeFrame({ type: 'display', id: cell.id, data, metadata });
}

globalThis.display = display;

// ---------------------------------------------------------------------------------------------
// Formatting values and errors (runs in the same realm as the cells)

function truncate(text, max) {
  return text.length <= max ? text : `${text.slice(0, max)}... [${text.length - max} more characters]`;
}

/** Drops the driver's and Node's internal stack frames from inspected text (errors, rejected promises). */
function withoutDriverFrames(text) {
  if (!text.includes(DRIVER_URL) && !text.includes('(node:')) return text;
  return text
    .split('\n')
    .filter((line) => !(/^\s+at /.test(line) && isDriverFrame(line)))
    .join('\n');
}

function inspectValue(value) {
  try {
    return truncate(withoutDriverFrames(inspect(value, INSPECT_OPTIONS)), MAX_VALUE_CHARS);
  } catch (error) {
    let reason = 'unknown error';
    try {
      reason = String(error && error.message);
    } catch {}
    return `[value could not be inspected: ${reason}]`;
  }
}

function isDriverFrame(line) {
  return line.includes('(node:') || /^\s*at node:/.test(line) || line.includes(DRIVER_URL);
}

function cleanStack(stack) {
  const lines = stack.split('\n');
  const out = [];
  let chars = 0;
  let inFrames = false;
  for (const line of lines) {
    if (/^\s+at /.test(line)) inFrames = true;
    else if (inFrames && line.trim() === '') continue;
    if (inFrames && isDriverFrame(line)) continue;
    if (out.length >= MAX_TRACEBACK_LINES || chars >= MAX_TRACEBACK_CHARS) {
      out.push('    ...');
      break;
    }
    const kept = truncate(line, MAX_TRACEBACK_CHARS - chars);
    chars += kept.length;
    out.push(kept);
  }
  return out;
}

function read(object, key) {
  try {
    return object[key];
  } catch {
    return undefined;
  }
}

function describeError(value) {
  try {
    if (isNativeError(value) || value instanceof Error) {
      let ename = read(value, 'name');
      if (typeof ename !== 'string' || ename === '') {
        const ctor = read(value, 'constructor');
        ename = (ctor && typeof ctor.name === 'string' && ctor.name) || 'Error';
      }
      const message = read(value, 'message');
      const evalue = truncate(message === undefined ? '' : String(message), MAX_EVALUE_CHARS);
      let stack = read(value, 'stack');
      if (typeof stack !== 'string' || stack === '') stack = evalue ? `${ename}: ${evalue}` : ename;
      return { ename, evalue, traceback: cleanStack(stack) };
    }
    let ename;
    if (value === null) ename = 'null';
    else if (typeof value === 'object' || typeof value === 'function') {
      const ctor = read(value, 'constructor');
      ename = (ctor && typeof ctor.name === 'string' && ctor.name) || typeof value;
    } else ename = typeof value;
    const text = inspectValue(value);
    const evalue = truncate(typeof value === 'string' ? value : text, MAX_EVALUE_CHARS);
    return { ename, evalue, traceback: cleanStack(`Uncaught ${text}`) };
  } catch {
    return { ename: 'Error', evalue: 'the thrown value could not be described', traceback: [] };
  }
}

/** Called in the cells' realm through Runtime.callFunctionOn; must never throw. */
function helper(kind, value) {
  return kind === 'inspect' ? inspectValue(value) : describeError(value);
}

// ---------------------------------------------------------------------------------------------
// Inspector session and the cell's global environment

const session = new Session();
session.connect();

globalThis.require = createRequire(path.join(process.cwd(), '<notebook>'));

function post(method, params) {
  let error = null;
  let result;
  let answered = false;
  session.post(method, params, (e, r) => {
    error = e;
    result = r;
    answered = true;
  });
  if (!answered) throw new Error(`inspector command ${method} did not answer synchronously`);
  if (error) throw error;
  return result;
}

const HELPER_KEY = Symbol.for('runcell.helper');
globalThis[HELPER_KEY] = helper;
const helperId = post('Runtime.evaluate', {
  expression: `globalThis[Symbol.for('runcell.helper')]`,
  objectGroup: 'runcell-driver',
}).result.objectId;
delete globalThis[HELPER_KEY];

function isTermination(error) {
  return /terminat/i.test(String(error && error.message));
}

/** Runs helper(kind, remote) in the cells' realm; null means the call was interrupted. */
function callHelper(kind, remote) {
  let argument;
  if (remote.objectId !== undefined) argument = { objectId: remote.objectId };
  else if (remote.unserializableValue !== undefined)
    argument = { unserializableValue: remote.unserializableValue };
  else if (remote.type === 'undefined') argument = {};
  else argument = { value: remote.value };
  try {
    const response = post('Runtime.callFunctionOn', {
      objectId: helperId,
      functionDeclaration: 'function (kind, value) { return this(kind, value); }',
      arguments: [{ value: kind }, argument],
      returnByValue: true,
    });
    if (response.exceptionDetails) return kind === 'inspect' ? '[value could not be inspected]' : null;
    return response.result.value;
  } catch (error) {
    if (isTermination(error)) return null;
    throw error;
  }
}

function primitiveValue(remote) {
  if (remote.unserializableValue !== undefined) return remote.unserializableValue; // NaN, -0, 1n, Infinity
  return inspectValue(remote.value);
}

// ---------------------------------------------------------------------------------------------
// Running cells

const queue = [];
let worker = null;

function startNext() {
  while (current === null && queue.length > 0) run(queue.shift());
}

function run(request) {
  const max =
    Number.isFinite(request.maxOutputBytes) && request.maxOutputBytes >= 0
      ? request.maxOutputBytes
      : Infinity;
  const cell = { id: request.id, max, bytes: 0, dropped: 0, done: false, objects: false };
  current = cell;
  if (typeof request.code !== 'string') {
    finish(cell, { status: 'error', ename: 'TypeError', evalue: 'cell code is not a string', traceback: [] });
    return;
  }
  session.post(
    'Runtime.evaluate',
    { expression: request.code, replMode: true, awaitPromise: true, objectGroup: CELL_GROUP },
    (error, response) => evaluated(cell, error, response),
  );
}

function evaluated(cell, error, response) {
  if (cell.done) {
    // An abandoned (interrupted) cell finished after all; drop what it produced.
    const remote =
      response && (response.exceptionDetails ? response.exceptionDetails.exception : response.result);
    if (remote && remote.objectId) session.post('Runtime.releaseObject', { objectId: remote.objectId });
    return;
  }
  if (error) {
    if (isTermination(error)) finish(cell, { status: 'error', ...INTERRUPTED, interrupted: true });
    else if (/Execution context was destroyed|Cannot find context/.test(String(error.message))) {
      // The cell signalled its own process (kill(-1), kill(0), kill(pid)): Node then runs its
      // at-exit hooks, expecting to die, and the inspector context is gone for good. Only a new
      // kernel can run cells again: exit, and the server reports it and starts one.
      writeSync(2, 'runcell javascript driver: the JavaScript context was destroyed\n');
      process.exit(70);
    } else
      finish(cell, { status: 'error', ename: 'InternalError', evalue: String(error.message), traceback: [] });
    return;
  }
  if (response.exceptionDetails) {
    const remote = response.exceptionDetails.exception || { type: 'undefined' };
    if (remote.objectId) cell.objects = true;
    const described = callHelper('describe', remote);
    if (described === null) finish(cell, { status: 'error', ...INTERRUPTED, interrupted: true });
    else finish(cell, { status: 'error', ...described });
    return;
  }
  const remote = response.result;
  let value;
  if (remote.type === 'undefined') value = null;
  else if (remote.objectId) {
    cell.objects = true;
    value = callHelper('inspect', remote);
    if (value === null) {
      finish(cell, { status: 'error', ...INTERRUPTED, interrupted: true });
      return;
    }
  } else value = primitiveValue(remote);
  finish(cell, { status: 'ok', value });
}

function finish(cell, outcome) {
  if (cell.done) return;
  if (pending !== null && pending.cell === cell) flushPending();
  cell.done = true;
  if (current === cell) current = null;
  if (cell.objects) session.post('Runtime.releaseObjectGroup', { objectGroup: CELL_GROUP });
  const result = { type: 'result', id: cell.id, ...outcome };
  if (cell.dropped > 0) result.dropped = cell.dropped;
  writeFrame(result);
  worker.postMessage({ type: 'done', id: cell.id });
  startNext();
}

function interrupt(id) {
  if (current !== null && current.id === id) {
    // If the cell were still running synchronously we would not be here; it is awaiting
    // something. Stop waiting for it; whatever it does later is ignored.
    finish(current, { status: 'error', ...INTERRUPTED, interrupted: true });
    return;
  }
  const index = queue.findIndex((request) => request.id === id);
  if (index >= 0) {
    const [request] = queue.splice(index, 1);
    finish(
      { id: request.id, max: 0, bytes: 0, dropped: 0, done: false, objects: false },
      { status: 'error', ...INTERRUPTED, interrupted: true },
    );
  }
}

// Errors that escape a cell's own promise chain (a throwing timer, an unhandled rejection)
// would kill a plain Node process; a notebook kernel reports them on stderr and carries on.
function reportUncaught(error) {
  const { traceback } = describeError(error);
  emitStream('stderr', `Uncaught ${traceback.join('\n')}\n`);
}
process.on('uncaughtException', reportUncaught);
process.on('unhandledRejection', reportUncaught);

function shutdown(code) {
  process.exit(code);
}

process.on('exit', () => {
  if (!dead) {
    try {
      flushPending();
    } catch {}
  }
  try {
    session.disconnect();
  } catch {}
});

// Without a ref'ed handle, timers created by cells would not keep the process alive while a
// cell awaits them (the inspector does not count as activity).
setInterval(() => {}, 1 << 30);

// ---------------------------------------------------------------------------------------------
// Request reader (worker thread)

const WORKER_SOURCE = `
import { parentPort } from 'node:worker_threads';
import { Session } from 'node:inspector';
import net from 'node:net';

const REQUEST_FD = ${REQUEST_FD};
const MAX_FRAME_BYTES = ${MAX_FRAME_BYTES};

// Connected only for the moment it is needed: a session still connected when the process
// exits makes Node print "Waiting for the debugger to disconnect...".
function terminateMain() {
  const session = new Session();
  session.connectToMainThread();
  session.post('Runtime.terminateExecution', () => session.disconnect());
}

// Execute requests forwarded to the main thread and not yet reported done.
const live = new Set();
parentPort.on('message', (message) => {
  if (message.type === 'done') live.delete(message.id);
});

function interrupt(id) {
  if (!live.has(id)) return;
  // If the main thread is idle (the cell awaits a promise) it handles this message at once.
  parentPort.postMessage({ type: 'interrupt', id });
  setTimeout(() => {
    if (!live.has(id)) return;
    // Still running: the main thread is busy in synchronous code. Terminate it (once per
    // request; a stray termination would hit whatever JavaScript runs next).
    terminateMain();
    const nudge = setInterval(() => {
      if (live.has(id)) parentPort.postMessage({ type: 'interrupt', id });
      else clearInterval(nudge);
    }, 100);
  }, 20);
}

let closed = false;
function close() {
  if (closed) return;
  closed = true;
  parentPort.postMessage({ type: 'eof' });
  // The main thread may be stuck in a cell; make sure the process goes away.
  setTimeout(() => {
    terminateMain();
    parentPort.postMessage({ type: 'eof' });
  }, 100);
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), 2000);
}

let chunks = [];
let buffered = 0;
function onData(chunk) {
  chunks.push(chunk);
  buffered += chunk.length;
  while (buffered >= 4) {
    if (chunks[0].length < 4) chunks = [Buffer.concat(chunks)];
    const length = chunks[0].readUInt32BE(0);
    if (length > MAX_FRAME_BYTES) return close();
    if (buffered < 4 + length) return;
    const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    let message;
    try {
      message = JSON.parse(all.toString('utf8', 4, 4 + length));
    } catch {
      return close();
    }
    const rest = all.subarray(4 + length);
    chunks = rest.length > 0 ? [rest] : [];
    buffered = rest.length;
    if (message === null || typeof message !== 'object') continue;
    if (message.type === 'execute') {
      live.add(message.id);
      parentPort.postMessage(message);
    } else if (message.type === 'interrupt') {
      interrupt(message.id);
    }
  }
}

const input = new net.Socket({ fd: REQUEST_FD, readable: true, writable: false, allowHalfOpen: true });
input.on('data', onData);
input.on('end', close);
input.on('error', close);
parentPort.postMessage({ type: 'ready' });
`;

// The worker's source is an ES module like this one (set explicitly rather than inherited).
worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: ['--input-type=module'] });
worker.on('error', (error) => {
  try {
    fs.writeSync(2, `runcell driver: request reader failed: ${error && error.stack}\n`);
  } catch {}
  shutdown(1);
});
worker.on('exit', () => shutdown(1));
worker.on('message', (message) => {
  switch (message.type) {
    case 'execute':
      queue.push(message);
      if (current === null) startNext();
      break;
    case 'interrupt':
      interrupt(message.id);
      break;
    case 'ready':
      writeFrame({ type: 'ready', language: 'javascript', version: process.versions.node });
      break;
    case 'eof':
      shutdown(0);
      break;
  }
});
