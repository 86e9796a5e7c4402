/**
 * The runtimes this machine offers, found at start: a language is offered only when its
 * interpreter is there and answers with its version. Requests name a language, an alias, and
 * optionally a version prefix: `python`, `py`, `python@3.11`, `node@20`.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Config } from '../config.ts';
import { RuncellError } from '../errors.ts';
import type { Language } from './languages.ts';

const run = promisify(execFile);

export interface Runtime {
  language: Language;
  version: string;
  aliases: string[];
  /** Has a persistent kernel (notebook cells). */
  stateful: boolean;
  /** Runs one-shot programs (jobs). */
  oneShot: boolean;
}

async function version(binary: string, pattern: RegExp): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await run(binary, ['--version'], { env: {}, timeout: 10_000 });
    return pattern.exec(stdout + stderr)?.[1];
  } catch {
    return undefined;
  }
}

export async function discoverRuntimes(config: Config): Promise<Runtime[]> {
  const [python, node] = await Promise.all([
    version(config.pythonPath, /Python (\d+\.\d+\.\d+)/),
    version(config.nodePath, /v(\d+\.\d+\.\d+)/),
  ]);
  const runtimes: Runtime[] = [];
  if (python)
    runtimes.push({
      language: 'python',
      version: python,
      aliases: ['py', 'python3'],
      stateful: true,
      oneShot: false,
    });
  if (node) {
    runtimes.push({
      language: 'javascript',
      version: node,
      aliases: ['js', 'node'],
      stateful: true,
      oneShot: false,
    });
    runtimes.push({ language: 'typescript', version: node, aliases: ['ts'], stateful: true, oneShot: false });
  }
  return runtimes;
}

/** The runtime a request names, or a 400 that lists what is available. */
export function resolveRuntime(runtimes: Runtime[], requested: string): Runtime {
  const [name, wanted] = requested.split('@', 2) as [string, string | undefined];
  const runtime = runtimes.find(
    (r) =>
      (r.language === name || r.aliases.includes(name)) &&
      (wanted === undefined || r.version === wanted || r.version.startsWith(`${wanted}.`)),
  );
  if (runtime) return runtime;
  const available = runtimes.map((r) => `${r.language}@${r.version}`).join(', ') || 'none';
  throw new RuncellError(
    'LANGUAGE_UNSUPPORTED',
    `language ${JSON.stringify(requested)} is not available; available: ${available}`,
  );
}
