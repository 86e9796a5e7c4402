import { readFileSync } from 'node:fs';
import type { KernelDriver } from '../kernel-driver.ts';

// Passed with -c: the sandbox needs no view of the server's files.
const SOURCE = readFileSync(new URL('./driver.py', import.meta.url), 'utf8');

/**
 * A persistent interactive bash per notebook, driven by a small Python program that speaks the
 * kernel protocol (see driver.py for how cells, interrupts and their ends are delimited).
 */
export class BashDriver implements KernelDriver {
  readonly language = 'bash' as const;
  readonly #python: string;
  readonly #bash: string;

  constructor(python: string, bash: string) {
    this.#python = python;
    this.#bash = bash;
  }

  argv(): string[] {
    // -I: ignore PYTHON* variables and the user site directory. No address-space cap, unlike the
    // Python kernel: the cgroup's OOM killer picks the cell's biggest process, not the shell, so
    // the notebook's context usually survives a command that runs out of memory.
    return [this.#python, '-I', '-c', SOURCE, this.#bash];
  }
}
