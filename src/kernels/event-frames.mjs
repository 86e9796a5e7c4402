// Event frames out of a Node kernel (fd 4), shared by the JavaScript driver and the Jupyter
// bridge: each wrapper puts this file before its own source (one -e module, no view of the
// server's files). A driver defines `channelGone()`: what to do once the server is gone.
// Bound before any cell runs: a cell that patches fs or JSON cannot reach the channel this way.
import { writeSync as writeEventFd } from 'node:fs';

const REQUEST_FD = 3;
const EVENT_FD = 4;
const MAX_FRAME_BYTES = 64 * 1024 * 1024;
const stringifyFrame = JSON.stringify;
const frameBuffer = Buffer.from;

let dead = false;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function writeFrame(message) {
  if (dead) return;
  const body = frameBuffer(stringifyFrame(message), 'utf8');
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  let offset = 0;
  while (offset < frame.length) {
    try {
      offset += writeEventFd(EVENT_FD, frame, offset, frame.length - offset);
    } catch (error) {
      if (error && error.code === 'EAGAIN') {
        Atomics.wait(sleepCell, 0, 0, 1);
        continue;
      }
      // The server is gone (EPIPE, EBADF, ...): nothing left to report to.
      dead = true;
      channelGone();
      return;
    }
  }
}

/** Stream text not yet sent: { cell, name, parts, size, ... }, filled by the driver. */
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
