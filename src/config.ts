/**
 * One typed schema for every setting. Each option has a type, a default and a description;
 * values come from flags (`--max-output-bytes=1048576`) or environment variables
 * (`RUNCELL_MAX_OUTPUT_BYTES`), plus the conventional `HOST` and `PORT`.
 * docs/config.md is generated from this file (`npm run docs:config`).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { RuncellError } from './errors.ts';

const Int = (def: number, description: string, minimum = 0, maximum?: number) =>
  Type.Integer({ default: def, description, minimum, ...(maximum === undefined ? {} : { maximum }) });

export const ConfigSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', description: 'Address to listen on (env HOST).' }),
  port: Int(3000, 'TCP port to listen on (env PORT).', 0, 65535),
  dataDir: Type.String({
    default: './.runcell',
    description: 'Directory for the SQLite database and notebook workspaces.',
  }),
  dbSync: Type.Union([Type.Literal('full'), Type.Literal('normal')], {
    default: 'full',
    description:
      "SQLite's synchronous setting. `full`: every commit (a submission before it is accepted, a result before it is announced) is fsynced, so it survives power loss. `normal`: it survives the server's crash but not the machine's (no fsync per commit: 0.3-0.9 ms less per commit on the disks measured).",
  }),
  workspaceDir: Type.String({
    default: '',
    description:
      'Directory of notebook workspaces. Empty: <dataDir>/workspaces, or /var/lib/runcell/workspaces-<key> when the data directory is not searchable by the sandbox uids.',
  }),
  logLevel: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info', description: 'Log level (pino).' },
  ),
  authToken: Type.String({
    default: '',
    description:
      'Bearer token required on every route but /healthz. Empty: no auth, and then only loopback addresses may be used.',
  }),
  corsOrigins: Type.Array(Type.String(), {
    default: [],
    description: 'Browser origins allowed to call the API (comma-separated; `*` for any). None by default.',
  }),
  defaultLanguage: Type.String({
    default: 'python',
    description: 'Language of cells whose submission names none (any runtime this server offers).',
  }),
  sandbox: Type.Union([Type.Literal('bwrap'), Type.Literal('none')], {
    default: 'bwrap',
    description: 'Sandbox backend. `none` runs kernels unconfined: development only, loopback only.',
  }),
  sandboxUidBase: Int(
    61000,
    'When run as root, kernels run as host uids from this one upwards, one per live kernel.',
    1000,
  ),
  sandboxNetwork: Type.Boolean({ default: false, description: 'Give kernels network access.' }),
  pythonPath: Type.String({ default: '/usr/bin/python3', description: 'Python interpreter for kernels.' }),
  bashPath: Type.String({
    default: '/usr/bin/bash',
    description: 'Bash for shell kernels (run by a Python driver).',
  }),
  nodePath: Type.String({ default: '/usr/bin/node', description: 'Node.js binary for JavaScript kernels.' }),
  jupyterKernelspecDir: Type.String({
    default: '',
    description:
      'Extra directory of Jupyter kernelspecs (`<name>/kernel.json`), searched before /usr/local/share/jupyter/kernels and /usr/share/jupyter/kernels; each spec is offered as `jupyter:<name>`.',
  }),
  cellTimeoutSeconds: Int(30, 'Timeout of a cell whose submission gives none.', 1),
  maxCellTimeoutSeconds: Int(300, 'Upper bound for the timeout a submission may ask for.', 1),
  cellCpuSeconds: Int(
    0,
    "CPU time a cell's processes may use together before it is interrupted; 0: as many seconds as its timeout.",
    0,
  ),
  interruptGraceMs: Int(
    2000,
    'How long an interrupted cell may take to stop before its kernel is killed.',
    0,
  ),
  maxOutputBytes: Int(1048576, 'Output bytes kept per cell; the excess is dropped with a marker.', 1024),
  kernelMemoryMb: Int(512, 'Memory limit per kernel (memory cgroup), MiB.', 32),
  kernelMaxProcesses: Int(64, 'Process and thread limit per kernel (pids cgroup).', 8),
  kernelCpus: Type.Number({
    default: 1,
    minimum: 0,
    description: 'CPU cores one kernel may use at most (cpu cgroup quota); 0 for no cap.',
  }),
  kernelMaxOpenFiles: Int(1024, 'Open files per kernel process (RLIMIT_NOFILE).', 16),
  kernelMaxFileMb: Int(1024, 'Largest file a kernel may write, MiB (RLIMIT_FSIZE).', 1),
  workspaceMb: Int(
    1024,
    "Size of each notebook's workspace, MiB: its own filesystem (needs root; 0 for a plain directory).",
    0,
  ),
  workspaceInodes: Int(65536, "Files and directories each notebook's workspace may hold.", 64),
  maxUploadBytes: Int(256 * 1048576, 'Largest file upload into a workspace, bytes.', 1),
  kernelTmpMb: Int(64, 'Size of the private /tmp and /dev/shm of each kernel, MiB.', 1),
  kernelPool: Type.Array(Type.String({ pattern: '^[a-z][a-z0-9:@._-]*=[0-9]+$' }), {
    default: ['python=2'],
    description:
      'Kernels kept started ahead, per language (`python=2,javascript=1`): a new notebook claims one for its first cell, and it is replaced in the background. Empty for none.',
  }),
  maxKernels: Int(64, 'Live kernels per machine; the least recently used idle one is stopped beyond it.', 1),
  cullIdleSeconds: Int(
    3600,
    'Stop a kernel idle this long (its notebook then starts fresh, and is told so); 0: never.',
    0,
  ),
  cullIdleSecondsPython: Int(0, 'cullIdleSeconds for Python kernels; 0: the general one.', 0),
  cullIdleSecondsJavascript: Int(
    0,
    'cullIdleSeconds for JavaScript and TypeScript kernels; 0: the general one.',
    0,
  ),
  cullIntervalSeconds: Int(60, 'How often idle kernels are looked for.', 1),
  cullBusy: Type.Boolean({
    default: false,
    description: 'Also stop kernels busy with one cell for longer than the idle timeout.',
  }),
  cullConnected: Type.Boolean({
    default: false,
    description: "Also stop idle kernels of notebooks a client follows (the notebook's feed or WebSocket).",
  }),
  debugFeed: Type.Boolean({
    default: false,
    description:
      'Also put every kernel protocol message on the notebook feed (kernel.message), for debugging.',
  }),
  jobConcurrency: Int(0, 'Jobs (one-shot programs) running at once on this machine; 0: one per core.', 0),
  jobQueueSize: Int(64, 'Jobs waiting beyond those; more are refused with 429 and Retry-After.', 0),
  jobTimeoutSeconds: Int(10, 'Wall-clock limit of a job that asks for none.', 1),
  jobMaxTimeoutSeconds: Int(300, 'Most wall-clock time a job may ask for (Flux `runtime: 0`).', 1),
  jobMaxCpuSeconds: Int(
    300,
    'Most CPU time a job may ask for; unasked, CPU time is bounded by the wall limit.',
    1,
  ),
  jobMemoryMb: Int(256, "Memory of a job's process tree, MiB.", 16),
  jobMaxMemoryMb: Int(2048, 'Most memory a job may ask for, MiB.', 16),
  jobProcesses: Int(64, 'Processes and threads of a job; one more ends it (`pids`).', 4),
  jobMaxProcesses: Int(256, 'Most processes a job may ask for.', 4),
  jobOutputBytes: Int(1048576, 'Bytes kept of stdout, and of stderr; more ends the job.', 1024),
  jobMaxOutputBytes: Int(16777216, 'Most output a job may ask for.', 1024),
  jobCompileTimeoutSeconds: Int(60, 'Wall-clock limit of a compilation.', 1),
  jobCompileMemoryMb: Int(1024, 'Memory of a compilation, MiB (rustc needs ~400).', 64),
  jobCompileMaxProcesses: Int(128, 'Processes and threads of a compilation.', 8),
  jobCpus: Type.Number({
    default: 1,
    exclusiveMinimum: 0,
    description: 'CPU cores one job may use (cpu cgroup quota).',
  }),
  jobTmpMb: Int(64, "Size of a job's private /tmp and /dev/shm, MiB.", 1),
  jobWorkspaceMb: Int(
    64,
    "Size of a job's workspace (its own tmpfs, counted in its memory), MiB; 0: a plain directory.",
    0,
  ),
  jobWorkspaceInodes: Int(8192, "Files and directories in a job's workspace.", 64),
  fluxServiceStop: Type.Boolean({
    default: false,
    description: 'Let `POST /service/stop` (the Flux API) stop the server gracefully.',
  }),
  maxConcurrentNotebooks: Int(
    32,
    'Notebooks whose cells run at the same time (each kernel is capped at kernelCpus by its cgroup; more wait in the queue).',
    1,
  ),
  maxCellsPerSubmission: Int(1000, 'Cells one submission may carry.', 1),
  bodyLimitBytes: Int(5 * 1024 * 1024, 'Largest request body accepted.', 1024),
});

export type Config = Static<typeof ConfigSchema>;
export type ConfigKey = keyof Config;

/** Environment variable for an option: `maxOutputBytes` → `RUNCELL_MAX_OUTPUT_BYTES`. */
export function envName(key: string): string {
  if (key === 'host' || key === 'port') return key.toUpperCase();
  return 'RUNCELL_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

/** Flag for an option: `maxOutputBytes` → `--max-output-bytes`. */
export function flagName(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

function parseRaw(schema: TSchema, raw: string): unknown {
  if (schema.type === 'array') {
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }
  if (schema.type === 'integer' || schema.type === 'number') return raw.trim() === '' ? raw : Number(raw);
  if (schema.type === 'boolean')
    return ['1', 'true', 'yes'].includes(raw.toLowerCase())
      ? true
      : ['0', 'false', 'no'].includes(raw.toLowerCase())
        ? false
        : raw;
  return raw;
}

/**
 * Builds the config from defaults, then environment, then flags, then `overrides` (tests).
 * Throws RUNCELL_ERR_CONFIG_INVALID naming the option and what is wrong with it.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  argv: string[] = [],
  overrides: Partial<Config> = {},
): Config {
  const props = ConfigSchema.properties as Record<string, TSchema>;
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const m = /^(--[a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!m)
      throw new RuncellError('CONFIG_INVALID', `unknown argument "${arg}" (flags look like --port=3000)`);
    flags.set(m[1]!, m[2] ?? 'true');
  }
  const known = new Set(Object.keys(props).map(flagName));
  for (const flag of flags.keys()) {
    if (!known.has(flag)) throw new RuncellError('CONFIG_INVALID', `unknown option ${flag}`);
  }

  const config: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(props)) {
    const source = flags.has(flagName(key)) ? flagName(key) : envName(key);
    const raw = flags.get(flagName(key)) ?? env[envName(key)];
    let value: unknown = key in overrides ? (overrides as Record<string, unknown>)[key] : undefined;
    if (value === undefined && raw !== undefined) value = parseRaw(schema, raw);
    if (value === undefined) value = structuredClone(schema.default);
    if (!Value.Check(schema, value)) {
      const first = [...Value.Errors(schema, value)][0];
      throw new RuncellError(
        'CONFIG_INVALID',
        `invalid value ${JSON.stringify(value)} for ${key} (${source}): ${first?.message ?? 'wrong type'}`,
      );
    }
    config[key] = value;
  }
  const result = config as Config;
  if (result.maxCellTimeoutSeconds < result.cellTimeoutSeconds) {
    throw new RuncellError(
      'CONFIG_INVALID',
      `cellTimeoutSeconds (${result.cellTimeoutSeconds}) is above maxCellTimeoutSeconds (${result.maxCellTimeoutSeconds})`,
    );
  }
  return result;
}
