import { readFileSync } from 'node:fs';
import type { KernelDriver } from '../kernel-driver.ts';

// Passed with -c: the sandbox needs no view of the server's files.
const SOURCE = readFileSync(new URL('./driver.py', import.meta.url), 'utf8');

const ADDRESS_SPACE_SLACK = 128 * 1048576;

export class PythonDriver implements KernelDriver {
  readonly language = 'python' as const;
  readonly #python: string;

  constructor(python: string) {
    this.#python = python;
  }

  argv(limits: { memoryBytes: number }): string[] {
    // -I: ignore PYTHON* variables and the user site directory. The driver caps its own address
    // space at the cgroup limit plus what an idle interpreter maps without using (thread stacks,
    // libraries: ~100 MiB), so an allocation beyond the limit raises MemoryError instead of
    // getting the kernel OOM-killed.
    const addressSpace = limits.memoryBytes + ADDRESS_SPACE_SLACK;
    return [this.#python, '-I', '-c', SOURCE, String(addressSpace)];
  }
}
