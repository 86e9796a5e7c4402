/**
 * Jupyter kernelspecs installed on the host: each `<dir>/<name>/kernel.json` becomes a runtime
 * `jupyter:<name>`. The directories are the administrator's (never a notebook's), so the specs
 * are trusted as configuration; they are still checked for the shape runcell relies on.
 */
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';

export interface Kernelspec {
  name: string;
  displayName: string;
  language: string;
  /** Command line; `{connection_file}` (and `{resource_dir}`) are filled in by the bridge. */
  argv: string[];
  env: Record<string, string>;
  interruptMode: 'signal' | 'message';
  /** The spec's directory (realpath): its files are visible to the kernel. */
  resourceDir: string;
}

export interface SkippedKernelspec {
  path: string;
  reason: string;
}

export const KERNELSPEC_DIRS = ['/usr/local/share/jupyter/kernels', '/usr/share/jupyter/kernels'];

// jupyter_client's rule for kernel names.
const NAME = /^[a-z0-9._-]+$/i;
// What the sandbox shows of the host: an absolute command elsewhere does not exist inside.
const VISIBLE_PREFIXES = ['/usr/', '/bin/', '/sbin/'];

/**
 * Reads the kernelspecs of `extraDir` (first, as Jupyter's user directory comes first), then
 * /usr/local/share and /usr/share. A name found twice keeps its first spec.
 */
export function discoverKernelspecs(extraDir?: string): {
  kernelspecs: Kernelspec[];
  skipped: SkippedKernelspec[];
} {
  const kernelspecs: Kernelspec[] = [];
  const skipped: SkippedKernelspec[] = [];
  const seen = new Map<string, string>();
  for (const dir of extraDir ? [extraDir, ...KERNELSPEC_DIRS] : KERNELSPEC_DIRS) {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      continue; // no such directory: nothing installed there
    }
    for (const name of names) {
      const path = join(dir, name, 'kernel.json');
      const first = seen.get(name);
      if (first !== undefined) {
        skipped.push({ path, reason: `shadowed by ${first}` });
        continue;
      }
      const spec = readKernelspec(name, join(dir, name));
      if (typeof spec === 'string') {
        skipped.push({ path, reason: spec });
        continue;
      }
      seen.set(name, path);
      kernelspecs.push(spec);
    }
  }
  return { kernelspecs, skipped };
}

/** The spec in `dir`, or why it cannot be used. */
function readKernelspec(name: string, dir: string): Kernelspec | string {
  if (!NAME.test(name)) return 'the name may only hold letters, digits, ".", "_" and "-"';
  let raw: unknown;
  let resourceDir: string;
  try {
    resourceDir = realpathSync(dir);
    raw = JSON.parse(readFileSync(join(resourceDir, 'kernel.json'), 'utf8'));
  } catch (err) {
    return `unreadable: ${(err as Error).message}`;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a JSON object';
  const spec = raw as Record<string, unknown>;
  const { argv, env = {}, interrupt_mode: interruptMode = 'signal' } = spec;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string')) {
    return 'argv must be a non-empty list of strings';
  }
  if (!argv.some((a) => a.includes('{connection_file}'))) return 'argv never names {connection_file}';
  const command = argv[0] as string;
  if (command.startsWith('/') && !VISIBLE_PREFIXES.some((p) => command.startsWith(p))) {
    return `${command} is outside /usr, so the sandbox cannot run it`;
  }
  if (typeof spec.display_name !== 'string') return 'display_name must be a string';
  if (typeof spec.language !== 'string') return 'language must be a string';
  if (
    typeof env !== 'object' ||
    env === null ||
    Array.isArray(env) ||
    !Object.values(env).every((v) => typeof v === 'string')
  ) {
    return 'env must map names to strings';
  }
  if (interruptMode !== 'signal' && interruptMode !== 'message') {
    return 'interrupt_mode must be "signal" or "message"';
  }
  return {
    name,
    displayName: spec.display_name,
    language: spec.language,
    argv: argv as string[],
    env: env as Record<string, string>,
    interruptMode,
    resourceDir,
  };
}
