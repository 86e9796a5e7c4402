/** POST /api/v1/format on a bare Fastify app: the plugin, the shared schemas, the error handler. */
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installErrorHandling } from '../../src/api/error-handler.ts';
import { formatRoutes } from '../../src/api/format-routes.ts';
import { ErrorResponse } from '../../src/api/schemas.ts';

const BODY_LIMIT = 64 * 1024;
let app: FastifyInstance;

beforeAll(async () => {
  // As buildApp configures Fastify: no type coercion.
  app = Fastify({ bodyLimit: BODY_LIMIT, ajv: { customOptions: { coerceTypes: false } } });
  app.addSchema(ErrorResponse);
  installErrorHandling(app);
  await app.register(formatRoutes());
  await app.ready();
});
afterAll(() => app.close());

const format = (payload: object) => app.inject({ method: 'POST', url: '/api/v1/format', payload });

async function formatted(language: string, code: string): Promise<string> {
  const res = await format({ language, code });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().formatted_code;
}

async function failure(payload: object, status = 400) {
  const res = await format(payload);
  expect(res.statusCode, res.body).toBe(status);
  return res.json() as { error: string; code: string; statusCode: number };
}

describe('POST /api/v1/format', () => {
  it('formats Python in black style', async () => {
    expect(await formatted('python', "x = {  'a':1 }\ndef f(a,b):\n  return a+b")).toBe(
      'x = {"a": 1}\n\n\ndef f(a, b):\n    return a + b\n',
    );
  });

  it('formats JavaScript with Prettier', async () => {
    expect(await formatted('javascript', 'const a={b:1,c:[1,2]}\nfunction f(x){return x*2}')).toBe(
      'const a = { b: 1, c: [1, 2] };\nfunction f(x) {\n  return x * 2;\n}\n',
    );
    expect(await formatted('javascript', 'const el = <div className="a">{x}</div>')).toBe(
      'const el = <div className="a">{x}</div>;\n',
    );
  });

  it('formats TypeScript with Prettier', async () => {
    expect(await formatted('typescript', 'interface A{b:string;c?:number}\nlet x:A={b:"y"}')).toBe(
      'interface A {\n  b: string;\n  c?: number;\n}\nlet x: A = { b: "y" };\n',
    );
  });

  it('formats Java with prettier-plugin-java', async () => {
    const out = await formatted('java', 'class A{int f(int x){if(x>1){return x;}return 0;}}');
    expect(out).toMatch(/^class A \{\n/);
    expect(out).toContain(
      '  int f(int x) {\n    if (x > 1) {\n      return x;\n    }\n    return 0;\n  }\n}\n',
    );
    // Formatting is stable: the output formats to itself.
    expect(await formatted('java', out)).toBe(out);
  });

  it('names the line and column of a syntax error, for each language', async () => {
    const cases = [
      ['python', 'def f(:\n    pass', 'invalid python: line 1, column 7: '],
      ['javascript', 'const a = {\n  b: 1,,\n}', 'invalid javascript: line 2, column 8: Unexpected token'],
      ['typescript', 'let x: = 1', 'invalid typescript: line 1, column 8: Type expected.'],
      ['java', 'class A {\n  void f() { int x = 1 }\n}', 'invalid java: line 2, column 23: missing ";"'],
      ['java', 'class A {\n  void f( {\n}', 'invalid java: line 2, column 3: unexpected '],
    ];
    for (const [language, code, message] of cases) {
      const body = await failure({ language: language!, code: code! });
      expect(body).toMatchObject({ code: 'RUNCELL_ERR_FORMAT_SYNTAX_ERROR', statusCode: 400 });
      expect(body.error.startsWith(message!), body.error).toBe(true);
      expect(body.error).not.toContain('\n'); // no code frame, one line
    }
  });

  it('counts columns in characters, not bytes', async () => {
    const body = await failure({
      language: 'java',
      code: 'class É { void f() { String s = "é"; int = ; } }',
    });
    expect(body.error).toMatch(/^invalid java: line 1, column 38: /);
  });

  it('refuses a language it cannot format, naming the ones it can', async () => {
    const body = await failure({ language: 'cobol', code: 'DISPLAY "HI".' });
    expect(body).toEqual({
      error: 'cannot format "cobol": the formatter takes python, javascript, typescript, java',
      code: 'RUNCELL_ERR_LANGUAGE_UNSUPPORTED',
      statusCode: 400,
    });
  });

  it('validates the body and bounds its size', async () => {
    expect((await failure({ code: 'x = 1' })).code).toBe('RUNCELL_ERR_REQUEST_INVALID');
    expect((await failure({ language: 'python', code: 5 })).code).toBe('RUNCELL_ERR_REQUEST_INVALID');
    const big = await failure({ language: 'python', code: 'x = 1\n'.repeat(BODY_LIMIT) }, 413);
    expect(big.code).toBe('RUNCELL_ERR_REQUEST_TOO_LARGE');
  });
});
