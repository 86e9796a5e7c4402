/** A notebook's live feed over WebSocket and SSE, with real kernels. */
import type { FastifyInstance } from 'fastify';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalStatus, notebookId, startApp, submit } from '../helpers.ts';

let app: FastifyInstance;
let port: number;
beforeAll(async () => {
  app = await startApp();
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  port = typeof address === 'object' && address ? address.port : 0;
});
afterAll(() => app.close());

interface Message {
  type: string;
  seq?: number;
  result?: { type: string; output: string };
  [k: string]: unknown;
}

/** A WebSocket client that records every message. */
async function connect(nb: string, query = '') {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/api/v1/notebooks/${nb}/ws${query}`);
  const messages: Message[] = [];
  const waiters: { test: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString()) as Message;
    messages.push(message);
    for (const w of [...waiters]) {
      if (w.test(message)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(message);
      }
    }
  });
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const next = (test: (m: Message) => boolean) =>
    new Promise<Message>((resolve) => {
      const seen = messages.find(test);
      if (seen) resolve(seen);
      else waiters.push({ test, resolve });
    });
  return { socket, messages, next, send: (m: unknown) => socket.send(JSON.stringify(m)) };
}

describe('notebook feed', () => {
  it('gives two WebSocket clients the same events, in the same order, for a cell either runs', async () => {
    const nb = notebookId();
    const [a, b] = [await connect(nb), await connect(nb)];
    a.send({ type: 'execute', requestId: 'r1', cells: [{ cellId: 'c1', code: "print('hi')\n40 + 2" }] });
    const submitted = await a.next((m) => m.type === 'submitted');
    expect(submitted).toMatchObject({ requestId: 'r1' });
    const done = (m: Message) => m.type === 'submission.finished';
    await Promise.all([a.next(done), b.next(done)]);
    const feed = (ms: Message[]) =>
      ms.filter((m) => m.seq !== undefined).map((m) => [m.seq, m.type, m.state ?? m.text ?? '']);
    expect(feed(a.messages)).toEqual(feed(b.messages));
    expect(feed(a.messages).map(([, type, detail]) => `${type}:${detail}`)).toEqual([
      'cell.started:',
      'kernel.state:starting',
      'kernel.state:idle',
      'kernel.state:busy',
      'cell.stream:hi\n',
      'kernel.state:idle',
      'cell.finished:',
      'submission.finished:success',
    ]);
    const finished = a.messages.find((m) => m.type === 'cell.finished');
    expect(finished!.result!.output).toBe('hi\n42');
    // The feed also carries submissions made elsewhere (the Pennant API).
    const id = await submit(app, { notebookId: nb, cells: [{ cellId: 'c2', code: 'print(1)' }] });
    await finalStatus(app, id);
    await b.next((m) => m.type === 'submission.finished' && m.submissionId === id);
    a.socket.close();
    b.socket.close();
  });

  it('interrupts the running cell on request, keeping the context', async () => {
    const nb = notebookId();
    const client = await connect(nb);
    client.send({
      type: 'execute',
      cells: [
        { cellId: 'set', code: 'kept = 5' },
        { cellId: 'sleep', code: 'import time; time.sleep(60)' },
      ],
    });
    await client.next((m) => m.type === 'cell.started' && m.cellId === 'sleep');
    await client.next((m) => m.type === 'kernel.state' && m.state === 'busy' && (m.seq ?? 0) > 4);
    client.send({ type: 'interrupt', requestId: 'stop' });
    expect(await client.next((m) => m.type === 'interrupted')).toMatchObject({
      requestId: 'stop',
      interrupted: true,
    });
    const finished = await client.next((m) => m.type === 'cell.finished' && m.cellId === 'sleep');
    expect(finished.result!.type).toBe('error');
    expect(finished!.result!.output).toMatch(/KeyboardInterrupt/);
    client.send({ type: 'execute', cells: [{ cellId: 'get', code: 'kept' }] });
    const after = await client.next((m) => m.type === 'cell.finished' && m.cellId === 'get');
    expect(after.result!.output).toBe('5');
    client.socket.close();
  });

  it('answers bad commands with an error message, not a dropped connection', async () => {
    const client = await connect(notebookId());
    client.socket.send('not json');
    expect((await client.next((m) => m.type === 'error')).error).toMatch(/JSON/);
    client.send({ type: 'execute', requestId: 'bad', cells: [] });
    expect(await client.next((m) => m.type === 'error' && m.requestId === 'bad')).toMatchObject({
      error: expect.stringMatching(/cells/),
    });
    client.send({ type: 'dance', requestId: 'x' });
    expect((await client.next((m) => m.requestId === 'x')).type).toBe('error');
    expect(client.socket.readyState).toBe(WebSocket.OPEN);
    client.socket.close();
  });

  it('resumes the SSE twin after Last-Event-ID, without duplicates', async () => {
    const nb = notebookId();
    const id = await submit(app, { notebookId: nb, cells: [{ cellId: 'a', code: "print('x')" }] });
    await finalStatus(app, id);
    const read = async (headers: Record<string, string>) => {
      const controller = new AbortController();
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/notebooks/${nb}/events`, {
        headers,
        signal: controller.signal,
      });
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const reader = res.body!.getReader();
      let text = '';
      while (!text.includes('event: submission.finished'))
        text += new TextDecoder().decode((await reader.read()).value);
      controller.abort();
      return [...text.matchAll(/^id: (\d+)\nevent: ([\w.]+)/gm)].map((m) => [Number(m[1]), m[2]] as const);
    };
    const all = await read({});
    expect(all.at(-1)![1]).toBe('submission.finished');
    const resumed = await read({ 'last-event-id': String(all[2]![0]) });
    expect(resumed).toEqual(all.slice(3));
  });

  it('asks the interactive client for input(), over the WebSocket or POST .../stdin', async () => {
    const nb = notebookId();
    const client = await connect(nb);
    client.send({
      type: 'execute',
      cells: [{ cellId: 'ask', code: "name = input('Name? ')\nprint('hi', name)" }],
    });
    const asked = await client.next((m) => m.type === 'input.requested');
    expect(asked).toMatchObject({ cellId: 'ask', prompt: 'Name? ', password: false });
    client.send({ type: 'stdin', value: 'Ann', requestId: 's1' });
    expect((await client.next((m) => m.requestId === 's1')).type).toBe('stdin.accepted');
    const done = await client.next((m) => m.type === 'cell.finished' && m.cellId === 'ask');
    expect(done.result!.output).toBe('Name? Ann\nhi Ann\n');

    client.send({ type: 'execute', cells: [{ cellId: 'again', code: 'print(input() * 2)' }] });
    await client.next((m) => m.type === 'input.requested' && m.cellId === 'again');
    const post = await fetch(`http://127.0.0.1:${port}/api/v1/notebooks/${nb}/stdin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ value: 'ab' }),
    });
    expect(await post.json()).toEqual({ delivered: true });
    expect(
      (await client.next((m) => m.type === 'cell.finished' && m.cellId === 'again')).result!.output,
    ).toBe('ab\nabab\n');
    const late = await fetch(`http://127.0.0.1:${port}/api/v1/notebooks/${nb}/stdin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ value: 'nobody asked' }),
    });
    expect(late.status).toBe(409);
    expect((await late.json()).code).toBe('RUNCELL_ERR_STDIN_NOT_WAITING');
    client.socket.close();
  });

  it('ends a cell waiting for input at its timeout, and the kernel goes on', async () => {
    const nb = notebookId();
    const client = await connect(nb);
    client.send({
      type: 'execute',
      timeout: 1,
      cells: [{ cellId: 'wait', code: "x = 1\ninput('never answered')" }],
    });
    const done = await client.next((m) => m.type === 'cell.finished' && m.cellId === 'wait');
    expect(done.result).toMatchObject({ type: 'error', timedOut: true });
    client.send({ type: 'execute', cells: [{ cellId: 'next', code: 'x' }] });
    expect((await client.next((m) => m.type === 'cell.finished' && m.cellId === 'next')).result!.output).toBe(
      '1',
    );
    client.socket.close();
  });

  it('fails input() at once, with a clear error, for a cell submitted without an interactive client', async () => {
    const id = await submit(app, { notebookId: notebookId(), cells: [{ cellId: 'a', code: "input('? ')" }] });
    const status = await finalStatus(app, id);
    expect(status.results[0]!.type).toBe('error');
    expect(status.results[0]!.output).toMatch(/EOFError: input\(\) needs an interactive client/);
    expect(status.results[0]!.timedOut).toBe(false);
  });

  it('puts every kernel protocol message on the feed when debugFeed is on', async () => {
    const debug = await startApp({ debugFeed: true });
    try {
      await debug.listen({ host: '127.0.0.1', port: 0 });
      const address = debug.server.address();
      const debugPort = typeof address === 'object' && address ? address.port : 0;
      const nb = notebookId();
      const socket = new WebSocket(`ws://127.0.0.1:${debugPort}/api/v1/notebooks/${nb}/ws`);
      const messages: Message[] = [];
      const finished = new Promise<void>((resolve) =>
        socket.on('message', (data) => {
          const m = JSON.parse(data.toString()) as Message;
          messages.push(m);
          if (m.type === 'submission.finished') resolve();
        }),
      );
      await new Promise((resolve) => socket.once('open', resolve));
      socket.send(JSON.stringify({ type: 'execute', cells: [{ cellId: 'a', code: "print('dbg')" }] }));
      await finished;
      const raw = messages
        .filter((m) => m.type === 'kernel.message')
        .map((m) => [m.direction, (m.message as { type: string }).type]);
      expect(raw).toEqual([
        ['out', 'ready'],
        ['in', 'execute'],
        ['out', 'stream'],
        ['out', 'result'],
      ]);
      socket.close();
    } finally {
      await debug.close();
    }
  });
});
