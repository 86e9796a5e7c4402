import type { FastifyError, FastifyInstance } from 'fastify';
import { errorBody, RuncellError, type ErrorName } from '../errors.ts';

/** Fastify's own errors, by code, as ours. */
const FASTIFY_CODES: Record<string, ErrorName> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'REQUEST_MALFORMED_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'REQUEST_MALFORMED_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'REQUEST_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'REQUEST_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'REQUEST_INVALID',
};

export function toRuncellError(err: FastifyError): RuncellError {
  if (err instanceof RuncellError) return err;
  if (err.validation) return new RuncellError('REQUEST_INVALID', `invalid request: ${err.message}`);
  const mapped = FASTIFY_CODES[err.code];
  if (mapped === 'REQUEST_MALFORMED_JSON')
    return new RuncellError(mapped, `the body is not valid JSON: ${err.message}`);
  if (mapped) return new RuncellError(mapped, err.message);
  if (err instanceof SyntaxError)
    return new RuncellError('REQUEST_MALFORMED_JSON', `the body is not valid JSON: ${err.message}`);
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)
    return new RuncellError('REQUEST_INVALID', err.message);
  return new RuncellError('INTERNAL', 'internal server error', { cause: err });
}

/** Every error leaves as `{error, code, statusCode}`; only real faults are logged as errors. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const error = toRuncellError(err);
    if (error.statusCode >= 500) req.log.error({ err }, 'request failed');
    return reply.code(error.statusCode).send(errorBody(error));
  });
  app.setNotFoundHandler((req, reply) => {
    const error = new RuncellError('ROUTE_NOT_FOUND', `no route for ${req.method} ${req.url.split('?')[0]}`);
    return reply.code(404).send(errorBody(error));
  });
}
