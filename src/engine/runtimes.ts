/**
 * The runtimes this machine offers, found at start: a language is offered only when its
 * interpreter or toolchain is there and answers with its version. Requests name a language, an
 * alias, and optionally a version prefix: `python`, `py`, `python@3.11`, `java@17`, `node@20`,
 * `jupyter:python3`.
 *
 * Each stateful runtime has a kernel, named by `kernel`: the language for its newest version,
 * `language@major` for the others (so `java@17` beside a newer default JDK is a kernel of its
 * own, and `java@25`, when 25 is the newest, is the same kernel as `java`).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import { RuncellError } from '../errors.ts';
import { BashDriver } from '../kernels/bash/bash-driver.ts';
import { findJdks } from '../kernels/java/build.ts';
import { JavaDriver } from '../kernels/java/java-driver.ts';
import { JavascriptDriver } from '../kernels/javascript/javascript-driver.ts';
import { discoverKernelspecs } from '../kernels/jupyter/kernelspecs.ts';
import { JupyterDriver } from '../kernels/jupyter/jupyter-driver.ts';
import type { KernelDriver } from '../kernels/kernel-driver.ts';
import { PythonDriver } from '../kernels/python/python-driver.ts';
import { TypescriptDriver } from '../kernels/typescript/typescript-driver.ts';
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
  /** The kernel cells of this runtime run in (a key of the drivers), when stateful. */
  kernel?: string;
}

export interface Kernels {
  runtimes: Runtime[];
  /** Kernel drivers by Runtime.kernel. */
  drivers: Record<string, KernelDriver>;
}

async function version(binary: string, args: string[], pattern: RegExp): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await run(binary, args, { env: {}, timeout: 10_000 });
    return pattern.exec(stdout + stderr)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Finds the kernels this machine can run. `driversDir` holds drivers compiled at first use
 * (Java's); it must be readable by the sandbox uids.
 */
export async function discoverKernels(
  config: Config,
  driversDir: string,
  log: FastifyBaseLogger,
): Promise<Kernels> {
  const [python, node, bash, jdks] = await Promise.all([
    version(config.pythonPath, ['--version'], /Python (\d+\.\d+\.\d+)/),
    version(config.nodePath, ['--version'], /v(\d+\.\d+\.\d+)/),
    version(config.bashPath, ['--version'], /version (\d+\.\d+\.\d+)/),
    findJdks(),
  ]);
  const runtimes: Runtime[] = [];
  const drivers: Record<string, KernelDriver> = {};
  const add = (runtime: Omit<Runtime, 'stateful' | 'oneShot' | 'kernel'>, driver: KernelDriver) => {
    runtimes.push({ ...runtime, stateful: true, oneShot: false, kernel: driver.language });
    drivers[driver.language] = driver;
  };
  if (python) {
    add(
      { language: 'python', version: python, aliases: ['py', 'python3'] },
      new PythonDriver(config.pythonPath),
    );
  }
  if (node) {
    add(
      { language: 'javascript', version: node, aliases: ['js', 'node'] },
      new JavascriptDriver(config.nodePath),
    );
    add({ language: 'typescript', version: node, aliases: ['ts'] }, new TypescriptDriver(config.nodePath));
  }
  if (bash && python) {
    add(
      { language: 'bash', version: bash, aliases: ['sh', 'shell'] },
      new BashDriver(config.pythonPath, config.bashPath),
    );
  }
  jdks.forEach((jdk, i) => {
    const kernel = i === 0 ? 'java' : `java@${jdk.version.split('.')[0]}`;
    add(
      { language: 'java', version: jdk.version, aliases: ['jshell'] },
      new JavaDriver(jdk.home, driversDir, kernel),
    );
  });
  if (node) {
    const { kernelspecs, skipped } = discoverKernelspecs(config.jupyterKernelspecDir || undefined);
    for (const skip of skipped) log.warn(skip, 'Jupyter kernelspec skipped');
    for (const spec of kernelspecs) {
      // A kernel's version is its own business (it says so when it starts): the spec is versionless.
      add(
        { language: `jupyter:${spec.name}`, version: 'kernelspec', aliases: [] },
        new JupyterDriver(config.nodePath, spec),
      );
    }
  }
  return { runtimes, drivers };
}

/**
 * Adds what runs one-shot programs (jobs' toolchains) to the kernels' runtimes, in place: the
 * same language and version is one runtime, both stateful and oneShot.
 */
export function addOneShot(
  runtimes: Runtime[],
  toolchains: readonly { language: string; version: string; aliases: readonly string[] }[],
): void {
  for (const t of toolchains) {
    const same = runtimes.find((r) => r.language === t.language && r.version === t.version);
    if (same) same.oneShot = true;
    else
      runtimes.push({
        language: t.language,
        version: t.version,
        aliases: [...t.aliases],
        stateful: false,
        oneShot: true,
      });
  }
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

/** The kernel a request's cells run in (see Runtime.kernel), or a 400. */
export function resolveKernel(runtimes: Runtime[], requested: string): string {
  const runtime = resolveRuntime(
    runtimes.filter((r) => r.stateful),
    requested,
  );
  return runtime.kernel!;
}
