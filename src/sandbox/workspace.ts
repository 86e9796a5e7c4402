import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { dirname, join, resolve } from 'node:path';

const run = promisify(execFile);

/**
 * Creates a notebook's workspace and gives it to `uid`, with the files a previous kernel (another
 * pool uid) left. coreutils' chown -R -P never follows a symlink the code planted (so the server
 * cannot be tricked into chowning a host file), never opens FIFOs or devices, and walks trees
 * deeper than PATH_MAX. It runs only when the owner changes: then no process of the notebook is
 * alive to race it, and no other notebook can reach this directory.
 */
export async function prepareWorkspace(dir: string, uid: number | undefined): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (uid === undefined) return;
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) throw new Error(`workspace ${dir} is not a directory`);
  if (stat.uid === uid) return;
  // A fresh workspace (the common case) is one directory: no walk, no process to spawn.
  if (readdirSync(dir).length > 0) await run('/usr/bin/chown', ['-R', '-P', '-h', `${uid}:${uid}`, dir]);
  chownSync(dir, uid, uid);
  chmodSync(dir, 0o700);
}

/**
 * Where notebook workspaces live. bwrap resolves a bind source's path as the unprivileged pool
 * uid (after it enters its user namespace), so every directory above a workspace must be
 * searchable by others. `<dataDir>/workspaces` is used when that holds (or when we are not
 * root, and bwrap runs as our own uid); otherwise, e.g. for a data directory under /root, a
 * directory under /var/lib/runcell keyed by the data directory.
 */
export function resolveWorkspaceRoot(dataDir: string, override: string): string {
  if (override) return resolve(override);
  const preferred = resolve(dataDir, 'workspaces');
  if (process.getuid?.() !== 0 || searchableByOthers(dirname(preferred))) return preferred;
  const key = createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 12);
  return join('/var/lib/runcell', `workspaces-${key}`);
}

function searchableByOthers(dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return false;
    } catch {
      // not created yet: it will be, searchable (see ensureWorkspaceRoot)
    }
    if (d === dirname(d)) return true;
  }
}

/**
 * Workspaces of pooled kernels (KernelManager), beside the root: any name inside the root may be
 * a notebook's. A claimed kernel's volume stays mounted here until its last sandbox is gone.
 */
export const poolRootOf = (root: string) => `${root}.pool`;

/** Creates the root, searchable but not listable by the pool uids. */
export function ensureWorkspaceRoot(root: string): void {
  mkdirSync(root, { recursive: true, mode: 0o711 });
  chmodSync(root, 0o711);
}
