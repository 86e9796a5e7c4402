/**
 * Every error the server answers with, by stable code. Each entry has its HTTP status and a
 * default message; docs/errors.md documents each code with how to solve it (a test checks).
 * Errors in *user code* are never these: they are cell results.
 */
export const ERRORS = {
  REQUEST_INVALID: { status: 400, message: 'The request does not match the schema' },
  REQUEST_MALFORMED_JSON: { status: 400, message: 'The request body is not valid JSON' },
  REQUEST_TOO_LARGE: { status: 413, message: 'The request body is larger than the server accepts' },
  REQUEST_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body must be application/json' },
  LANGUAGE_UNSUPPORTED: { status: 400, message: 'This language is not available' },
  SUBMISSION_NOT_FOUND: { status: 404, message: 'No submission has this id' },
  JOB_NOT_FOUND: { status: 404, message: 'No job has this id' },
  JOB_QUEUE_FULL: { status: 429, message: 'Every job slot and queue place is taken' },
  SERVICE_STOP_DISABLED: { status: 403, message: 'Stopping the server through the API is disabled' },
  NOTEBOOK_NOT_FOUND: { status: 404, message: 'No notebook has this id' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No route matches this method and path' },
  FILE_NOT_FOUND: { status: 404, message: 'No such file or directory in the workspace' },
  FILE_WRONG_TYPE: { status: 409, message: 'A file is where a directory is needed, or the other way round' },
  FILE_SYMLINK: { status: 400, message: 'The path goes through a symbolic link, which is not followed' },
  FILE_PATH_INVALID: { status: 400, message: 'The path is not a valid workspace path' },
  FILE_TOO_LARGE: { status: 413, message: 'The upload is larger than the server accepts' },
  FILE_NO_SPACE: { status: 507, message: "The notebook's workspace is full" },
  STDIN_NOT_WAITING: { status: 409, message: 'No cell of this notebook is waiting for input' },
  DOCUMENT_NOT_FOUND: { status: 404, message: 'This notebook has no document' },
  DOCUMENT_EXISTS: { status: 409, message: 'This notebook already has a document' },
  DOCUMENT_VERSION_CONFLICT: { status: 409, message: 'The document changed since the version given' },
  DOCUMENT_INVALID: { status: 400, message: 'The notebook is not valid nbformat 4' },
  DOCUMENT_CELL_NOT_FOUND: { status: 400, message: 'The document has no cell with this id' },
  DOCUMENT_INDEX_INVALID: { status: 400, message: 'The cell index is outside the document' },
  DOCUMENT_TOO_LARGE: { status: 413, message: 'The document would pass its size limits' },
  FORMAT_INVALID_PYTHON: { status: 400, message: 'The code is not valid Python' },
  FORMAT_SYNTAX_ERROR: { status: 400, message: 'The code does not parse in its language' },
  AUTH_REQUIRED: { status: 401, message: 'A valid bearer token is required' },
  SHUTTING_DOWN: { status: 503, message: 'The server is shutting down' },
  INTERNAL: { status: 500, message: 'Internal server error' },
  CONFIG_INVALID: { status: 500, message: 'The configuration is invalid' },
  SANDBOX_UNAVAILABLE: { status: 500, message: 'The sandbox cannot start processes on this machine' },
} as const;

export type ErrorName = keyof typeof ERRORS;

export const errorCode = (name: ErrorName) => `RUNCELL_ERR_${name}`;

export class RuncellError extends Error {
  readonly code: string;
  readonly statusCode: number;
  constructor(name: ErrorName, message: string = ERRORS[name].message, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RuncellError';
    this.code = errorCode(name);
    this.statusCode = ERRORS[name].status;
  }
}

/** The JSON body of every error response. `error` is a string, as Pennant clients read it. */
export interface ErrorBody {
  error: string;
  code: string;
  statusCode: number;
}

export function errorBody(err: RuncellError): ErrorBody {
  return { error: err.message, code: err.code, statusCode: err.statusCode };
}
