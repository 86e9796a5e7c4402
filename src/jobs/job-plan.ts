/**
 * From a job request to what runs: the files of the workspace, and the compile and run command
 * lines, each with its environment and limits. Everything a client sends is checked here, so the
 * compatibility routes (Flux, EDC) that map onto JobService get the same answers.
 */
import { Buffer } from 'node:buffer';
import { basename, extname } from 'node:path';
import { transform } from 'esbuild';
import { RuncellError } from '../errors.ts';
import { KERNEL_ENV } from '../kernels/kernel-driver.ts';
import type { JobLimits } from '../store/store.ts';
import { javaEntry } from './java-class.ts';
import { fill, resolveToolchain, type Toolchain } from './toolchains.ts';

export interface JobFileInput {
  /** Relative path in the workspace (`src/util.py`). */
  name: string;
  content: string;
  encoding?: 'utf8' | 'base64';
}

/** A program (`language` with `code` or `files`) or a shell command (`command`, Flux's shape). */
export interface JobRequest {
  language?: string;
  /** A version prefix (`17`); also accepted as `language@version`. */
  version?: string;
  code?: string;
  files?: JobFileInput[];
  /** The file to run (or compile) among `files`; the first one by default. */
  entry?: string;
  /** Run with `/bin/bash -c` in the sandbox. */
  command?: string;
  /** Flux: the most seconds the job may run; 0 for the server's maximum. */
  runtime?: number;
  stdin?: string;
  args?: string[];
  env?: Record<string, string>;
  limits?: Partial<JobLimits>;
  /** The client's own reference for the job (EDC's uuid). */
  ref?: string;
}

export interface JobLimitSettings {
  /** What a job gets when it asks for nothing (`cpuMs` is then its wall limit × `cpus`). */
  defaults: Omit<JobLimits, 'cpuMs'>;
  /** What no request can exceed. */
  max: JobLimits;
  /** For compilers, which need more than most programs (rustc: ~400 MiB); not up to the request. */
  compile: Omit<JobLimits, 'cpuMs'>;
  /** Cores one job may use (cpu cgroup quota). */
  cpus: number;
}

export interface JobStepPlan {
  argv: string[];
  env: Record<string, string>;
  limits: JobLimits;
  stdin?: Buffer;
}

export interface JobFile {
  name: string;
  content: Buffer;
}

export interface JobPlan {
  kind: 'program' | 'command';
  toolchain?: Toolchain;
  command?: string;
  files: JobFile[];
  /** Host paths the toolchain needs, read-only. */
  binds: string[];
  compile?: JobStepPlan;
  run: JobStepPlan;
  /** Set when the server-side compilation (TypeScript) failed: reported as the compile step. */
  compileError?: string;
}

const MAX_FILES = 100;
const MAX_PATH_DEPTH = 8;
const PATH_SEGMENT = /^(?!\.{1,2}$)[A-Za-z0-9._+-]{1,128}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const MAX_ENV = 64;
const MAX_ARGS = 1000;
/**
 * Variables a request may not set. None of them reaches beyond the sandbox (the program could
 * exec anything itself), but they would change how the server's own command line behaves: the
 * loader's (LD_PRELOAD, LD_LIBRARY_PATH, ...) load code before the program, and the runtimes'
 * option variables override the heap sizes derived from the memory limit, which keep an
 * oversized heap a program error instead of an out-of-memory kill.
 */
const RESERVED_ENV = /^(LD_.*|NODE_OPTIONS|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|JDK_JAVA_OPTIONS)$/;

const invalid = (message: string) => new RuncellError('REQUEST_INVALID', message);

function noNul(value: string, what: string): string {
  if (value.includes('\0')) throw invalid(`${what} may not contain NUL characters`);
  return value;
}

/** The request's limits within the server's maximums; a Flux `runtime` sets the wall limit. */
export function resolveLimits(request: JobRequest, settings: JobLimitSettings): JobLimits {
  const { defaults, max, cpus } = settings;
  const asked = request.limits ?? {};
  const pick = (key: keyof JobLimits, fallback: number) => {
    const value = asked[key] ?? fallback;
    if (!Number.isInteger(value) || value <= 0) throw invalid(`limits.${key} must be a positive integer`);
    return Math.min(value, max[key]);
  };
  let wallMs = pick('wallMs', defaults.wallMs);
  if (request.runtime !== undefined) {
    if (!(request.runtime >= 0)) throw invalid('runtime must be 0 (the server maximum) or more seconds');
    wallMs = request.runtime === 0 ? max.wallMs : Math.min(Math.ceil(request.runtime * 1000), max.wallMs);
  }
  return {
    wallMs,
    // Unless asked, CPU time is not a limit of its own: the wall limit bounds it already.
    cpuMs: pick('cpuMs', Math.max(1, Math.round(wallMs * cpus))),
    memoryBytes: pick('memoryBytes', defaults.memoryBytes),
    processes: pick('processes', defaults.processes),
    outputBytes: pick('outputBytes', defaults.outputBytes),
  };
}

function runEnv(env: Record<string, string> | undefined): Record<string, string> {
  const entries = Object.entries(env ?? {});
  if (entries.length > MAX_ENV) throw invalid(`env may have at most ${MAX_ENV} variables`);
  for (const [name, value] of entries) {
    if (!ENV_NAME.test(name)) throw invalid(`env: ${JSON.stringify(name)} is not a valid variable name`);
    if (RESERVED_ENV.test(name))
      throw invalid(`env: ${name} may not be set (it changes how the server runs the program)`);
    if (typeof value !== 'string') throw invalid(`env: the value of ${name} must be a string`);
    noNul(value, `env ${name}`);
  }
  return { ...KERNEL_ENV, ...Object.fromEntries(entries) };
}

function workspaceFiles(request: JobRequest, defaultName: (code: string) => string): JobFile[] {
  if ((request.code === undefined) === (request.files === undefined)) {
    throw invalid('a program needs either code or files');
  }
  if (request.code !== undefined) {
    if (request.entry !== undefined) throw invalid('entry goes with files, not code');
    return [{ name: defaultName(request.code), content: Buffer.from(request.code) }];
  }
  const files = request.files!;
  if (files.length === 0 || files.length > MAX_FILES)
    throw invalid(`files must hold 1 to ${MAX_FILES} files`);
  const seen = new Set<string>();
  const out = files.map((f) => {
    const segments = f.name.split('/');
    if (segments.length > MAX_PATH_DEPTH || !segments.every((s) => PATH_SEGMENT.test(s))) {
      throw invalid(
        `files: ${JSON.stringify(f.name)} is not a relative path of at most ${MAX_PATH_DEPTH} parts of A-Z a-z 0-9 . _ + -`,
      );
    }
    if (seen.has(f.name)) throw invalid(`files: ${f.name} is given twice`);
    seen.add(f.name);
    return { name: f.name, content: Buffer.from(f.content, f.encoding === 'base64' ? 'base64' : 'utf8') };
  });
  for (const f of out) {
    const parts = f.name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (seen.has(dir)) throw invalid(`files: ${dir} is a file and also the directory of ${f.name}`);
    }
  }
  return out;
}

/** TypeScript files become JavaScript files beside them; a syntax error is the compile error. */
async function stripTypes(files: JobFile[]): Promise<JobFile[] | string> {
  const out: JobFile[] = [];
  for (const file of files) {
    if (extname(file.name) !== '.ts') {
      out.push(file);
      continue;
    }
    try {
      const js = await transform(file.content.toString('utf8'), {
        loader: 'ts',
        sourcefile: file.name,
        target: 'esnext',
      });
      out.push({ name: file.name.replace(/\.ts$/, '.js'), content: Buffer.from(js.code) });
    } catch (err) {
      const errors = (err as { errors?: { text: string; location?: { line: number; column: number } }[] })
        .errors;
      if (!errors) throw err;
      return errors
        .map(
          (e) =>
            `${file.name}:${e.location ? `${e.location.line}:${e.location.column + 1}: ` : ' '}error: ${e.text}`,
        )
        .join('\n');
    }
  }
  const names = new Set<string>();
  for (const f of out) {
    if (names.has(f.name)) return `${f.name}: both a .ts file and this .js file are given`;
    names.add(f.name);
  }
  return out;
}

export async function planJob(
  request: JobRequest,
  toolchains: Toolchain[],
  settings: JobLimitSettings,
): Promise<JobPlan> {
  const limits = resolveLimits(request, settings);
  const stdin = request.stdin === undefined ? undefined : Buffer.from(request.stdin);
  if (request.command !== undefined) {
    for (const key of ['language', 'version', 'code', 'files', 'entry', 'args'] as const) {
      if (request[key] !== undefined)
        throw invalid(`a command job takes no ${key}: put everything in the command`);
    }
    if (request.command.trim() === '') throw invalid('command is empty');
    const command = noNul(request.command, 'command');
    const run = { argv: ['/bin/bash', '-c', command], env: runEnv(request.env), limits, stdin };
    return { kind: 'command', command, files: [], binds: [], run };
  }
  if (request.language === undefined) throw invalid('give a language (with code or files), or a command');
  const toolchain = resolveToolchain(toolchains, request.language, request.version);
  const recipe = toolchain.recipe;
  const java = recipe.sourceNaming === 'java-class';
  let files = workspaceFiles(request, (code) =>
    java ? javaEntry(code, recipe.sourceFile).file : recipe.sourceFile,
  );
  const entryName = request.entry ?? files[0]!.name;
  const entry = files.find((f) => f.name === entryName);
  if (!entry) throw invalid(`entry ${JSON.stringify(entryName)} is not one of the files`);
  const args = (request.args ?? []).map((a, i) => noNul(a, `args[${i}]`));
  if (args.length > MAX_ARGS) throw invalid(`args may have at most ${MAX_ARGS} arguments`);

  let source = entry.name;
  let compileError: string | undefined;
  if (recipe.transform === 'typescript') {
    const stripped = await stripTypes(files);
    if (typeof stripped === 'string') compileError = stripped;
    else files = stripped;
    source = source.replace(/\.ts$/, '.js');
  }
  const main = java ? javaEntry(entry.content.toString('utf8'), basename(entry.name)).main : source;
  const sources = files.filter((f) => extname(f.name) === extname(source)).map((f) => f.name);
  const values = (memoryBytes: number) => ({
    home: toolchain.home,
    source,
    sources,
    main,
    heapMb: String(Math.max(16, Math.floor(((recipe.heapShare ?? 1) * memoryBytes) / 1048576))),
  });
  const compileLimits = { ...settings.compile, cpuMs: Math.round(settings.compile.wallMs * settings.cpus) };
  const compile = recipe.compile && {
    argv: fill(recipe.compile, values(compileLimits.memoryBytes)),
    env: { ...KERNEL_ENV },
    limits: compileLimits,
  };
  const run = {
    argv: [...fill(recipe.run, values(limits.memoryBytes)), ...args],
    env: runEnv(request.env),
    limits,
    stdin,
  };
  return { kind: 'program', toolchain, files, binds: toolchain.binds, compile, run, compileError };
}
