import { readFileSync } from 'node:fs';
import type { KernelDriver } from '../kernel-driver.ts';

// Passed with -c: the sandbox needs no view of the server's files.
const SOURCE = readFileSync(new URL('./driver.py', import.meta.url), 'utf8');

export class PythonDriver implements KernelDriver {
  readonly language = 'python' as const;
  readonly #python: string;

  constructor(python: string) {
    this.#python = python;
  }

  argv(): string[] {
    // -I: ignore PYTHON* variables and the user site directory.
    return [this.#python, '-I', '-c', SOURCE];
  }
}
