/**
 * The API EDC routes (seed 002) over a real JobService: the seed's Java example verbatim,
 * javascript, a compile error, the result by uuid, and its push over Socket.IO (a raw Engine.IO
 * v4 websocket client: socket.io-client is not installed).
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachEdcSocket, edcRoutes } from '../../src/api/edc-routes.ts';
import { installErrorHandling } from '../../src/api/error-handler.ts';
import { errorCode } from '../../src/errors.ts';
import { startJobs } from '../jobs/helpers.ts';

const UIDS = { uidBase: 62804, uidCount: 4 };

/** The seed's request, byte for byte. */
const SEED_EXAMPLE = `{
    "code": "public class HelloWorld { public static void main(String[] args) { System.out.println(\\"Hello, World!\\"); } }",
    "language": "java",
    "version": "17",
    "uuid": "1"
}`;

let t: Awaited<ReturnType<typeof startJobs>>;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  t = await startJobs(UIDS);
  app = Fastify();
  installErrorHandling(app);
  await app.register(edcRoutes(t.jobs));
  attachEdcSocket(app, t.jobs);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  await app?.close();
  await t?.close();
});

const execute = (payload: string | object) =>
  app.inject({
    method: 'POST',
    url: '/execute-code',
    headers: { 'content-type': 'application/json' },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });
const result = (uuid: string) => app.inject({ method: 'GET', url: `/execute-code/${uuid}?wait=30` });

/** A Socket.IO client of the default namespace: resolves with the first event named `event`. */
function listen(event: string): { connected: Promise<void>; received: Promise<unknown>; close: () => void } {
  const ws = new WebSocket(`ws://${base}/socket.io/?EIO=4&transport=websocket`);
  let connected!: () => void;
  let received!: (data: unknown) => void;
  const promises = {
    connected: new Promise<void>((r) => (connected = r)),
    received: new Promise<unknown>((r) => (received = r)),
  };
  ws.on('message', (raw) => {
    const frame = raw.toString();
    if (frame.startsWith('0'))
      ws.send('40'); // Engine.IO open: join the default namespace
    else if (frame.startsWith('40')) connected();
    else if (frame === '2')
      ws.send('3'); // ping, pong
    else if (frame.startsWith('42')) {
      const [name, data] = JSON.parse(frame.slice(2)) as [string, unknown];
      if (name === event) received(data);
    }
  });
  return { ...promises, close: () => ws.close() };
}

describe('API EDC', () => {
  it("runs the seed's Java example as sent, and answers its result by uuid", async () => {
    const res = await execute(SEED_EXAMPLE);
    expect(res.statusCode).toBe(202);
    expect(res.json()).toMatchObject({ uuid: '1', state: 'queued' });
    const done = await result('1');
    expect(done.statusCode).toBe(200);
    expect(done.json()).toMatchObject({
      uuid: '1',
      language: 'java',
      version: expect.stringMatching(/^17/),
      state: 'completed',
      output: 'Hello, World!\n',
      error: '',
      exitCode: 0,
      reason: null,
    });
  }, 90_000);

  it('runs javascript, and reports a runtime error on stderr', async () => {
    await execute({ code: 'console.log(6 * 7)', language: 'javascript', uuid: 'js-ok' });
    expect((await result('js-ok')).json()).toMatchObject({ state: 'completed', output: '42\n', exitCode: 0 });
    await execute({ code: 'throw new Error("boom")', language: 'javascript', uuid: 'js-bad' });
    const bad = (await result('js-bad')).json();
    expect(bad).toMatchObject({ state: 'failed', exitCode: 1 });
    expect(bad.error).toContain('boom');
  });

  it("reports a compile error with the compiler's output", async () => {
    const code = 'public class Broken { public static void main(String[] a) { int x = "no"; } }';
    await execute({ code, language: 'java', version: '17', uuid: 'java-broken' });
    const broken = (await result('java-broken')).json();
    expect(broken).toMatchObject({ state: 'failed', reason: 'compile-error', output: '' });
    expect(broken.error).toMatch(/Broken\.java.*error/);
  }, 90_000);

  it('refuses other languages, and answers 404 for an unknown uuid', async () => {
    const res = await execute({ code: 'print(1)', language: 'python', version: '3', uuid: 'py' });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe(errorCode('REQUEST_INVALID'));
    const missing = await app.inject({ method: 'GET', url: '/execute-code/never-sent' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe(errorCode('JOB_NOT_FOUND'));
  });

  it('pushes the result over Socket.IO as an event named with the uuid', async () => {
    const uuid = randomUUID();
    const client = listen(uuid);
    try {
      await client.connected;
      const res = await execute({ code: 'console.log("pushed")', language: 'javascript', uuid });
      expect(res.statusCode).toBe(202);
      expect(await client.received).toMatchObject({
        uuid,
        id: res.json().id,
        state: 'completed',
        output: 'pushed\n',
        exitCode: 0,
      });
    } finally {
      client.close();
    }
  });

  it('refuses a Socket.IO connection that allowRequest rejects', async () => {
    const guarded = Fastify();
    attachEdcSocket(guarded, t.jobs, { allowRequest: (req) => req.headers.authorization === 'Bearer good' });
    await guarded.listen({ host: '127.0.0.1', port: 0 });
    const url = `ws://127.0.0.1:${(guarded.server.address() as AddressInfo).port}/socket.io/?EIO=4&transport=websocket`;
    const status = (headers: Record<string, string>) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(url, { headers });
        ws.on('open', () => (ws.close(), resolve(101)));
        ws.on('unexpected-response', (_req, res) => (ws.terminate(), resolve(res.statusCode!)));
        ws.on('error', () => {});
      });
    try {
      // Engine.IO refuses a websocket handshake with 400 (a polling one with 403).
      expect(await status({})).toBe(400);
      expect(await status({ authorization: 'Bearer bad' })).toBe(400);
      expect(await status({ authorization: 'Bearer good' })).toBe(101);
    } finally {
      await guarded.close();
    }
  });
});
