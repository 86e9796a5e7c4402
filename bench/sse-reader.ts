/**
 * A streaming client in a process of its own (so its parsing does not share the server's event
 * loop): submits one cell behind a short sleeping one (so it is connected before the cell
 * starts), reads the submission's Server-Sent Events, counts the lines and bytes of its
 * cell.stream events, and prints one JSON line of figures (milliseconds from its cell.started).
 *
 *   node --import tsx bench/sse-reader.ts <base url> <notebook id> <code>
 */
import http from 'node:http';

const [base, notebookId, code] = process.argv.slice(2) as [string, string, string];
async function submit(code: string): Promise<string> {
  const res = await fetch(`${base}/api/submit`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ notebookId, cells: [{ cellId: 'flood', code }], timeout: 300 }),
  });
  if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { submissionId: string }).submissionId;
}
await submit('import time\ntime.sleep(0.3)');
const submissionId = await submit(code);
let startedAt = 0; // when its cell.started arrived

const figures = { firstMs: 0, lastStreamMs: 0, finishedMs: 0, lines: 0, bytes: 0, events: 0 };
await new Promise<void>((resolve, reject) => {
  http
    .get(`${base}/api/v1/submissions/${submissionId}/events`, (res) => {
      res.setEncoding('latin1'); // byte counts; the flood is ASCII
      let carry = '';
      let inStream = false; // inside a cell.stream event's data
      res.on('data', (chunk: string) => {
        const now = performance.now();
        let text = carry + chunk;
        carry = '';
        let at = 0;
        for (;;) {
          if (!inStream) {
            if (!startedAt && text.includes('event: cell.started', at)) startedAt = now;
            const start = text.indexOf('event: cell.stream\ndata: ', at);
            const finished = text.indexOf('event: submission.finished', at);
            if (finished >= 0 && (start < 0 || finished < start)) figures.finishedMs = now;
            if (start < 0) {
              carry = text.slice(Math.max(at, text.length - 64)); // a marker cut in two
              break;
            }
            if (!figures.firstMs) figures.firstMs = now;
            figures.events++;
            inStream = true;
            at = start + 25;
          }
          const end = text.indexOf('\n\n', at);
          const stop = end < 0 ? text.length - 1 : end; // keep a last "\" that may start "\n"
          for (let i = text.indexOf('\\n', at); i >= 0 && i < stop; i = text.indexOf('\\n', i + 2))
            figures.lines++;
          figures.bytes += stop - at;
          figures.lastStreamMs = now;
          if (end < 0) {
            carry = text.slice(stop);
            break;
          }
          inStream = false;
          at = end + 2;
        }
        text = '';
      });
      res.on('end', resolve);
      res.on('error', reject);
    })
    .on('error', reject);
});
for (const key of ['firstMs', 'lastStreamMs', 'finishedMs'] as const) figures[key] -= startedAt;
console.log(JSON.stringify(figures));
