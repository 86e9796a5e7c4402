/**
 * Workspace quotas: each notebook's workspace is its own small ext4 filesystem (a sparse image
 * file, loop-mounted on the workspace directory), so a cell that fills it gets ENOSPC for bytes
 * or inodes without touching the host's disk or other notebooks. Mounted while a sandbox of the
 * notebook runs; unmounted once the last one is gone. Needs root (mount); without it, or with
 * a quota of 0, workspaces are plain directories.
 *
 * Formatting a volume costs more than starting a kernel, so one spare image per workspace root
 * and quota is formatted ahead of time, in `<root>.spares/` (beside the root: any name inside it
 * may be a notebook's): a new notebook's volume is a rename of it, and the next spare is made in
 * the background.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface WorkspaceQuota {
  bytes: number;
  inodes: number;
}

interface Held {
  count: number;
  ready: Promise<void>;
  /** Where the volume is mounted: the workspace, or where it was when move() renamed it. */
  mountPoint: string;
}

export class WorkspaceVolumes {
  /** Mounted volumes by workspace. */
  readonly #users = new Map<string, Held>();
  /** A formatted, unused image per `root|bytes|inodes`; undefined once making one failed. */
  readonly #spares = new Map<string, Promise<string | undefined>>();

  /**
   * Mounts the workspace's volume (creating it on first use) and says where it is mounted: the
   * workspace itself, or (after move()) its previous path. Counted: call detach() as often.
   */
  async attach(dir: string, quota: WorkspaceQuota): Promise<string> {
    const held = this.#users.get(dir);
    if (held) {
      held.count++;
      await held.ready;
      return held.mountPoint;
    }
    const ready = this.#mount(dir, quota);
    this.#users.set(dir, { count: 1, ready, mountPoint: dir });
    try {
      await ready;
      return dir;
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
    await unmount(held.mountPoint);
    if (held.mountPoint !== dir) {
      try {
        rmdirSync(held.mountPoint); // only ever the empty mount point, never files
      } catch {
        // still mounted (the unmount failed): leave it to the next start's sweep
      }
    }
  }

  async #mount(dir: string, quota: WorkspaceQuota): Promise<void> {
    const image = `${dir}.img`;
    if (isMountPoint(dir)) return; // a previous run's mount of the same volume
    if (!existsSync(image)) {
      const spare = await this.#takeSpare(dirname(dir), quota);
      if (spare) renameSync(spare, image);
      else await formatImage(image, quota);
    }
    // nosuid, nodev: nothing planted in a workspace can gain privileges on the host.
    await run('/usr/bin/mount', ['-o', 'loop,nosuid,nodev', image, dir]);
    try {
      rmdirSync(`${dir}/lost+found`);
    } catch {
      // already removed, or the cell keeps files there
    }
  }

  /**
   * Gives a mounted volume (held by one tree: a pooled kernel) a new workspace path, without
   * remounting: its image is renamed beside `to`, and it stays mounted where it is (the running
   * sandbox has its own view of it) until the last tree using it detaches. Later trees of `to`
   * get the same mount point from attach().
   */
  async move(from: string, to: string): Promise<void> {
    const held = this.#users.get(from);
    if (!held || held.count !== 1) throw new Error(`${from} is not a volume held once`);
    await held.ready;
    renameSync(`${from}.img`, `${to}.img`);
    mkdirSync(to, { mode: 0o700 });
    this.#users.delete(from);
    this.#users.set(to, held);
  }

  /** The spare image for this root and quota (making the next one), or undefined. */
  #takeSpare(root: string, quota: WorkspaceQuota): Promise<string | undefined> {
    const key = `${root}|${quota.bytes}|${quota.inodes}`;
    const taken = this.#spares.get(key);
    const spares = `${root}.spares`;
    // A previous run may have stopped while formatting one.
    if (!taken) rmSync(spares, { recursive: true, force: true });
    mkdirSync(spares, { recursive: true, mode: 0o700 });
    // Replaced before anything awaits: concurrent starts never get the same spare.
    const next = join(spares, `${randomUUID()}.img`);
    this.#spares.set(
      key,
      formatImage(next, quota).then(
        () => next,
        () => {
          rmSync(next, { force: true });
          return undefined;
        },
      ),
    );
    return taken ?? Promise.resolve(undefined);
  }

  /** Waits for spares being made (so none is left half-written), then deletes them. */
  async close(): Promise<void> {
    const spares = await Promise.all(this.#spares.values());
    this.#spares.clear();
    for (const spare of spares) if (spare) rmSync(spare, { force: true });
  }
}

async function formatImage(image: string, quota: WorkspaceQuota): Promise<void> {
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
