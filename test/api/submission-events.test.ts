/** Server-Sent Events of a submission, over a real socket. */
import http from 'node:http';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalStatus, notebookId, startApp, submit } from '../helpers.ts';

interface Received {
  id?: string;
  event: string;
  data: Record<string, unknown>;
  at: number;
}

let app: FastifyInstance;
let base: string;
beforeAll(async () => {
  app = await startApp();
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
});
afterAll(() => app.close());

/** Reads events until the stream ends, or until `stopAfter` of them arrived (then hangs up). */
async function readEvents(url: string, headers: Record<string, string> = {}, stopAfter = Infinity) {
  const controller = new AbortController();
  const res = await fetch(url, { headers, signal: controller.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: Received[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = res.body!.getReader();
  try {
    while (events.length < stopAfter) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0 && events.length < stopAfter) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (block.startsWith(':')) continue;
        const lines = block.split('\n');
        const field = (name: string) =>
          lines
            .find((l) => l.startsWith(`${name}:`))
            ?.slice(name.length + 1)
            .trim();
        events.push({
          id: field('id'),
          event: field('event')!,
          data: JSON.parse(field('data')!),
          at: performance.now(),
        });
      }
    }
  } finally {
    controller.abort();
  }
  return events;
}

describe('GET /api/v1/submissions/:id/events', () => {
  it('streams each line as it is printed, then the result, then the end', async () => {
    const id = await submit(app, {
      notebookId: notebookId(),
      cells: [{ cellId: 'a', code: "import time\nprint('one', flush=True)\ntime.sleep(1)\nprint('two')" }],
    });
    const events = await readEvents(`${base}/api/v1/submissions/${id}/events`);
    expect(events.map((e) => e.event)).toEqual([
      'cell.started',
      'cell.stream',
      'cell.stream',
      'cell.finished',
      'submission.finished',
    ]);
    const [, one, two, finished, end] = events;
    expect(one!.data).toMatchObject({ cellId: 'a', name: 'stdout', text: 'one\n' });
    expect(two!.data).toMatchObject({ text: 'two\n' });
    // "one" arrived while the cell was still sleeping, not with the result.
    expect(finished!.at - one!.at).toBeGreaterThan(500);
    expect((finished!.data.result as { output: string }).output).toBe('one\ntwo\n');
    expect(end!.data).toMatchObject({ status: 'success', state: 'success' });
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  it('resumes after Last-Event-ID without loss or duplicates, while running and after the end', async () => {
    const id = await submit(app, {
      notebookId: notebookId(),
      cells: [
        {
          cellId: 'a',
          code: 'import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)',
        },
        { cellId: 'b', code: "print('b')" },
      ],
    });
    const url = `${base}/api/v1/submissions/${id}/events`;
    const first = await readEvents(url, {}, 2); // cell.started and the first chunk, then hang up
    expect(first.map((e) => e.event)).toEqual(['cell.started', 'cell.stream']);
    const rest = await readEvents(url, { 'last-event-id': first[1]!.id! });
    const all = [...first, ...rest];
    expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
    const streamed = all
      .filter((e) => e.event === 'cell.stream' && e.data.cellId === 'a')
      .map((e) => e.data.text);
    expect(streamed.join('')).toBe('0\n1\n2\n');
    expect(all.at(-1)!.event).toBe('submission.finished');
    await finalStatus(app, id);

    // After the end, from the Store: the same ids, so nothing is repeated or missed.
    const replay = await readEvents(url, { 'last-event-id': first[1]!.id! });
    expect(replay.map((e) => [e.event, e.data.cellId])).toEqual([
      ['cell.finished', 'a'],
      ['cell.started', 'b'],
      ['cell.finished', 'b'],
      ['submission.finished', undefined],
    ]);
    expect(replay.map((e) => e.id)).toEqual(rest.filter((e) => e.event !== 'cell.stream').map((e) => e.id));
    const whole = await readEvents(`${url}?lastEventId=${encodeURIComponent(replay.at(-2)!.id!)}`);
    expect(whole.map((e) => e.event)).toEqual(['submission.finished']);
  });

  it('carries display() outputs as cell.display events, in order with the streams', async () => {
    const code =
      "class H:\n    def _repr_html_(self): return '<i>h</i>'\nprint('a')\ndisplay(H())\nprint('b')";
    const id = await submit(app, { notebookId: notebookId(), cells: [{ cellId: 'd', code }] });
    const events = await readEvents(`${base}/api/v1/submissions/${id}/events`);
    expect(events.map((e) => e.event)).toEqual([
      'cell.started',
      'cell.stream',
      'cell.display',
      'cell.stream',
      'cell.finished',
      'submission.finished',
    ]);
    expect(events[2]!.data).toMatchObject({ cellId: 'd', data: { 'text/html': '<i>h</i>' } });
  });

  it('sends a reader that falls behind everything at its own pace, without dropping it', async () => {
    const flood = await startApp({ maxOutputBytes: 16 << 20 });
    try {
      await flood.listen({ host: '127.0.0.1', port: 0 });
      const { port } = flood.server.address() as { port: number };
      const lines = 60_000; // ~6 MiB of stream, several times what may wait in the socket
      const id = await submit(flood, {
        notebookId: notebookId(),
        cells: [{ cellId: 'f', code: `for i in range(${lines}): print(f'{i:08d}' + 'x' * 92)` }],
      });
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get(`http://127.0.0.1:${port}/api/v1/submissions/${id}/events`, (res) => {
            res.pause(); // reads nothing while the cell floods
            setTimeout(() => res.resume(), 1500);
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (text += chunk));
            res.on('end', () => resolve(text));
          })
          .on('error', reject);
      });
      const events = body
        .split('\n\n')
        .filter((block) => block.startsWith('id:'))
        .map((block) => ({
          event: /^event: (.*)$/m.exec(block)![1],
          data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!),
        }));
      expect(events.map((e) => e.event)).not.toContain('overflow');
      expect(events.at(-1)).toMatchObject({ event: 'submission.finished', data: { state: 'success' } });
      const streamed = events
        .filter((e) => e.event === 'cell.stream')
        .map((e) => e.data.text)
        .join('');
      const expected = Array.from(
        { length: lines },
        (_, i) => `${String(i).padStart(8, '0')}${'x'.repeat(92)}\n`,
      );
      // In order and once each; chunks the log no longer held after the end are in the result.
      const whole = expected.join('');
      expect(streamed.length).toBeGreaterThan(1 << 20);
      expect(whole.startsWith(streamed)).toBe(true);
      const finished = events.find((e) => e.event === 'cell.finished')!;
      expect(finished.data.result.output === whole).toBe(true);
    } finally {
      await flood.close();
    }
  });

  it('answers 404 for an unknown submission and 400 for a malformed Last-Event-ID', async () => {
    expect((await fetch(`${base}/api/v1/submissions/nope/events`)).status).toBe(404);
    const id = await submit(app, { notebookId: notebookId(), cells: [{ cellId: 'a', code: '1' }] });
    const bad = await fetch(`${base}/api/v1/submissions/${id}/events`, { headers: { 'last-event-id': 'x' } });
    expect(bad.status).toBe(400);
    expect((await bad.json()).code).toBe('RUNCELL_ERR_REQUEST_INVALID');
  });
});
