import type { Language } from '../engine/languages.ts';

/** How to start one language's built-in kernel inside a sandbox. */
export interface KernelDriver {
  readonly language: Language;
  /** Command line inside the sandbox. */
  argv(limits: { memoryBytes: number }): string[];
  /** One-time work before the first start (compiling the driver); memoized by the driver. */
  prepare?(): Promise<void>;
  /** What the kernel reads on fd 0 at start (see SandboxSpec.stdin). */
  stdin?(): Buffer | undefined;
  /** Host paths the kernel needs to see, read-only (see SandboxSpec.readOnlyBinds). */
  readonly readOnlyBinds?: readonly string[];
  /**
   * Turns a cell into what the kernel runs (TypeScript → JavaScript), on the server; a cell that
   * does not compile is the cell's error, never the kernel's.
   */
  transform?(code: string): Promise<{ code: string } | { error: CellError }>;
}

export interface CellError {
  ename: string;
  evalue: string;
  traceback: string[];
}

/**
 * The whole environment a kernel sees: nothing of the server's (its variables may hold
 * secrets, and settings such as PYTHONUNBUFFERED or NODE_OPTIONS would change kernel behaviour).
 */
export const KERNEL_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: '/workspace',
  TMPDIR: '/tmp',
  USER: 'runcell',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  MPLBACKEND: 'Agg',
  // matplotlib's config and font cache go to the kernel's /tmp, not HOME (the workspace).
  MPLCONFIGDIR: '/tmp/matplotlib',
  XDG_CACHE_HOME: '/tmp/.cache',
  // glibc reserves 64 MiB of address space per malloc arena (one per thread): with the Python
  // kernel's address-space cap that would waste most of it.
  MALLOC_ARENA_MAX: '2',
};
