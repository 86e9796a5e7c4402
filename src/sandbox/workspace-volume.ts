/**
 * Workspace quotas: each notebook's workspace is its own small ext4 filesystem (a sparse image
 * file, loop-mounted on the workspace directory), so a cell that fills it gets ENOSPC for bytes
 * or inodes without touching the host's disk or other notebooks. Mounted while a sandbox of the
 * notebook runs; unmounted once the last one is gone. Needs root (mount); without it, or with
 * a quota of 0, workspaces are plain directories.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface WorkspaceQuota {
  bytes: number;
  inodes: number;
}

export class WorkspaceVolumes {
  readonly #users = new Map<string, { count: number; ready: Promise<void> }>();

  /** Mounts the workspace's volume (creating it on first use). Counted: call detach() as often. */
  async attach(dir: string, quota: WorkspaceQuota): Promise<void> {
    const held = this.#users.get(dir);
    if (held) {
      held.count++;
      return held.ready;
    }
    const ready = this.#mount(dir, quota);
    this.#users.set(dir, { count: 1, ready });
    try {
      await ready;
    } catch (err) {
      this.#users.delete(dir);
      throw err;
    }
  }

  async detach(dir: string): Promise<void> {
    const held = this.#users.get(dir);
    if (!held || --held.count > 0) return;
    this.#users.delete(dir);
    await held.ready.catch(() => {});
    await unmount(dir);
  }

  async #mount(dir: string, quota: WorkspaceQuota): Promise<void> {
    const image = `${dir}.img`;
    if (isMountPoint(dir)) return; // a previous run's mount of the same volume
    if (!existsSync(image)) {
      await run('/usr/bin/truncate', ['-s', String(quota.bytes), image]);
      // No journal (a scratch workspace, and no 32 MiB journal per notebook); no reserved blocks.
      // Inode tables take 256 bytes an inode: a small volume gets fewer inodes than asked for.
      const inodes = Math.min(quota.inodes, Math.floor(quota.bytes / 4096));
      await run('/usr/sbin/mkfs.ext4', [
        '-q',
        '-F',
        '-m',
        '0',
        '-O',
        '^has_journal',
        '-N',
        String(inodes),
        image,
      ]);
    }
    // nosuid, nodev: nothing planted in a workspace can gain privileges on the host.
    await run('/usr/bin/mount', ['-o', 'loop,nosuid,nodev', image, dir]);
    try {
      rmdirSync(`${dir}/lost+found`);
    } catch {
      // already removed, or the cell keeps files there
    }
  }
}

function isMountPoint(dir: string): boolean {
  try {
    return statSync(dir).dev !== statSync(`${dir}/..`).dev;
  } catch {
    return false;
  }
}

async function unmount(dir: string): Promise<void> {
  // The trees using it are dead; lazy detach covers a straggling reference (e.g. a shell in it).
  await run('/usr/bin/umount', ['-l', dir]).catch(() => {});
}

/** Unmounts workspace volumes under `root` that a previous run left mounted. */
export async function sweepVolumes(root: string): Promise<number> {
  const prefix = root.endsWith('/') ? root : `${root}/`;
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((point): point is string => point !== undefined && point.startsWith(prefix));
  for (const point of mounts) await unmount(point.replace(/\\040/g, ' '));
  return mounts.length;
}
