import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { KernelDriver } from '../kernel-driver.ts';
import type { Kernelspec } from './kernelspecs.ts';

// Passed with -e: the sandbox needs no view of the server's files beyond zeromq's package.
const SOURCE = readFileSync(new URL('./bridge.mjs', import.meta.url), 'utf8');

/** A kernelspec's kernel, started next to the bridge (bridge.mjs) in one sandbox. */
export class JupyterDriver implements KernelDriver {
  readonly language: `jupyter:${string}`;
  readonly readOnlyBinds: readonly string[];
  readonly #node: string;
  readonly #spec: Kernelspec;
  readonly #zeromq: string;

  constructor(node: string, spec: Kernelspec) {
    this.language = `jupyter:${spec.name}`;
    this.#node = node;
    this.#spec = spec;
    const { entry, packages } = zeromqFiles();
    this.#zeromq = entry;
    // /usr is in every sandbox already.
    const resources = spec.resourceDir.startsWith('/usr/') ? [] : [spec.resourceDir];
    this.readOnlyBinds = [...packages, ...resources];
  }

  argv(limits: { memoryBytes: number }): string[] {
    // The bridge holds a few messages at a time; a small heap leaves the memory to the kernel.
    const heapMb = Math.max(32, Math.min(256, Math.floor(limits.memoryBytes / 1048576 / 4)));
    const { name, argv, env, interruptMode, resourceDir } = this.#spec;
    const config = { zeromq: this.#zeromq, spec: { name, argv, env, interruptMode, resourceDir } };
    return [
      this.#node,
      `--max-old-space-size=${heapMb}`,
      '--input-type=module',
      '-e',
      SOURCE,
      JSON.stringify(config),
    ];
  }
}

let zeromq: { entry: string; packages: string[] } | undefined;

/**
 * zeromq's entry point and the package directories it loads at run time: its own (JavaScript
 * and the native addon) and cmake-ts, whose loader picks the addon. Real paths, bound at the
 * same place in the sandbox, so Node's resolution inside finds the same files.
 */
function zeromqFiles(): { entry: string; packages: string[] } {
  if (zeromq) return zeromq;
  const entry = realpathSync(createRequire(import.meta.url).resolve('zeromq'));
  const loader = realpathSync(createRequire(entry).resolve('cmake-ts/build/loader'));
  zeromq = { entry, packages: [packageRoot(entry), packageRoot(loader)] };
  return zeromq;
}

function packageRoot(file: string): string {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
  }
  throw new Error(`no package.json above ${file}`);
}
