import { createHash } from 'node:crypto';
import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/**
 * Creates a notebook's workspace and gives it to `uid`. Files a previous kernel (another pool
 * uid) left are handed over too. lchown never follows a symlink the code may have planted, so
 * the server cannot be tricked into chowning a host file.
 */
export function prepareWorkspace(dir: string, uid: number | undefined): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (uid === undefined) return;
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) throw new Error(`workspace ${dir} is not a directory`);
  if (stat.uid === uid) return;
  chownTree(dir, uid);
  chownSync(dir, uid, uid);
}

function chownTree(dir: string, uid: number): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    lchownSync(path, uid, uid);
    if (entry.isDirectory()) chownTree(path, uid);
  }
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

/** Creates the root, searchable but not listable by the pool uids. */
export function ensureWorkspaceRoot(root: string): void {
  mkdirSync(root, { recursive: true, mode: 0o711 });
  chmodSync(root, 0o711);
}
