import { readFileSync } from 'node:fs';
import type { KernelDriver } from '../kernel-driver.ts';

// Passed with -e: the sandbox needs no view of the server's files.
const SOURCE = readFileSync(new URL('./driver.mjs', import.meta.url), 'utf8');

export class JavascriptDriver implements KernelDriver {
  readonly language: 'javascript' | 'typescript' = 'javascript';
  readonly #node: string;

  constructor(node: string) {
    this.#node = node;
  }

  argv(limits: { memoryBytes: number }): string[] {
    // V8 cannot see the cgroup limit: size its heap below it so a big allocation fails with a
    // JavaScript error ("heap out of memory") rather than a kill by the OOM killer.
    const heapMb = Math.max(16, Math.floor((limits.memoryBytes / 1048576) * 0.75));
    return [this.#node, `--max-old-space-size=${heapMb}`, '--input-type=module', '-e', SOURCE];
  }
}
