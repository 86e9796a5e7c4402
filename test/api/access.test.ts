/** Who may call: CORS origins and the bearer token. */
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';
import { startApp } from '../helpers.ts';

describe('CORS', () => {
  it('allows no origin by default', async () => {
    const app = await startApp();
    try {
      const res = await app.inject({
        method: 'GET',
        url: '/healthz',
        headers: { origin: 'http://evil.example' },
      });
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
    } finally {
      await app.close();
    }
  });

  it('allows the configured origins, preflight included', async () => {
    const app = await startApp({ corsOrigins: ['http://notebook.example'] });
    try {
      const pre = await app.inject({
        method: 'OPTIONS',
        url: '/api/submit',
        headers: { origin: 'http://notebook.example', 'access-control-request-method': 'POST' },
      });
      expect(pre.statusCode).toBeLessThan(300);
      expect(pre.headers['access-control-allow-origin']).toBe('http://notebook.example');
      const other = await app.inject({
        method: 'GET',
        url: '/healthz',
        headers: { origin: 'http://evil.example' },
      });
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
    } finally {
      await app.close();
    }
  });
});

describe('bearer token', () => {
  it('guards every route but health and docs when configured', async () => {
    const app = await startApp({ authToken: 's3cret' });
    try {
      expect((await app.inject('/healthz')).statusCode).toBe(200);
      const denied = await app.inject({ method: 'POST', url: '/api/reset/nb' });
      expect(denied.statusCode).toBe(401);
      expect(denied.json().code).toBe('RUNCELL_ERR_AUTH_REQUIRED');
      const wrong = await app.inject({
        method: 'POST',
        url: '/api/reset/nb',
        headers: { authorization: 'Bearer nope' },
      });
      expect(wrong.statusCode).toBe(401);
      const ok = await app.inject({
        method: 'POST',
        url: '/api/reset/nb',
        headers: { authorization: 'Bearer s3cret' },
      });
      expect(ok.statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe('bearer token on the notebook WebSocket', () => {
  it('accepts the token as a runcell.bearer.<token> subprotocol, as browsers can send it', async () => {
    const app = await startApp({ authToken: 's3cret' });
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      const url = `ws://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/api/v1/notebooks/nb/ws`;
      const open = (protocols: string[]) =>
        new Promise<string>((resolve) => {
          const socket = new WebSocket(url, protocols);
          socket.once('open', () => {
            resolve(`open ${socket.protocol}`);
            socket.close();
          });
          socket.once('error', (err) => resolve(`error ${err.message}`));
        });
      expect(await open(['runcell.bearer.s3cret'])).toBe('open runcell.bearer.s3cret');
      expect(await open(['runcell.bearer.wrong'])).toMatch(/error .*401/);
      expect(await open([])).toMatch(/error .*401/);
    } finally {
      await app.close();
    }
  });
});
