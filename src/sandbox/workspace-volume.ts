/**
 * Workspace quotas: each notebook's workspace is its own small ext4 filesystem (a sparse image
 * file, loop-mounted on the workspace directory), so a cell that fills it gets ENOSPC for bytes
 * or inodes without touching the host's disk or other notebooks. Mounted while a sandbox of the
 * notebook runs; unmounted once the last one is gone. Needs root (mount); without it, or with
 * a quota of 0, workspaces are plain directories.
 *
 * Formatting and mounting a volume cost more than starting a kernel, so one spare volume per
 * workspace root and quota is made ahead of time, formatted and mounted in `<root>.spares/`
 * (beside the root: any name inside it may be a notebook's): a new notebook's volume is the
 * spare, its image renamed beside the workspace and bound there (a syscall, through the mount
 * helper); the next spare is made in the background.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { MountHelper } from './mount-helper.ts';
import { ensureWorkspaceRoot } from './workspace.ts';

const run = promisify(execFile);

export interface WorkspaceQuota {
  bytes: number;
  inodes: number;
}

interface Held {
  count: number;
  ready: Promise<void>;
  /**
   * Every mount of the volume, the workspace's last: a spare's or a pooled kernel's mount point
   * (removed once unmounted), then binds of it at later paths.
   */
  mounts: { path: string; remove: boolean }[];
}

/** A formatted volume, mounted, waiting for a workspace. */
interface Spare {
  image: string;
  mountPoint: string;
}

const SPARE_DELAY_MS = 250;

export class WorkspaceVolumes {
  /** Mounted volumes by workspace. */
  readonly #users = new Map<string, Held>();
  /** The spare per `root|bytes|inodes`; undefined once making one failed. */
  readonly #spares = new Map<string, Promise<Spare | undefined>>();
  readonly #helper: MountHelper;

  constructor(helper: MountHelper) {
    this.#helper = helper;
  }

  /** Mounts the workspace's volume (creating it on first use). Counted: call detach() as often. */
  async attach(dir: string, quota: WorkspaceQuota): Promise<void> {
    const held = this.#users.get(dir);
    if (held) {
      held.count++;
      return held.ready;
    }
    const mounts: Held['mounts'] = [];
    const ready = this.#mount(dir, quota, mounts);
    this.#users.set(dir, { count: 1, ready, mounts });
    try {
      await ready;
    } catch (err) {
      this.#users.delete(dir);
      await this.#unmount(mounts);
      throw err;
    }
  }

  async detach(dir: string): Promise<void> {
    const held = this.#users.get(dir);
    if (!held || --held.count > 0) return;
    this.#users.delete(dir);
    await held.ready.catch(() => {});
    await this.#unmount(held.mounts);
  }

  async #mount(dir: string, quota: WorkspaceQuota, mounts: Held['mounts']): Promise<void> {
    const image = `${dir}.img`;
    if (isMountPoint(dir)) {
      mounts.push({ path: dir, remove: false }); // a previous run's mount of the same volume
      return;
    }
    if (!existsSync(image)) {
      const spare = await this.#takeSpare(dirname(dir), quota);
      if (spare) {
        renameSync(spare.image, image); // the loop device follows the file
        mounts.push({ path: spare.mountPoint, remove: true });
        await this.#helper.bind(spare.mountPoint, dir);
        mounts.push({ path: dir, remove: false });
        return;
      }
      await formatImage(image, quota);
    }
    await mountImage(image, dir);
    mounts.push({ path: dir, remove: false });
  }

  /** Lazily detaches every mount of a volume, the latest first, and removes the spare ones. */
  async #unmount(mounts: Held['mounts']): Promise<void> {
    for (const { path, remove } of [...mounts].reverse()) {
      try {
        await this.#helper.umount(path);
        if (remove) rmdirSync(path); // only ever an empty mount point, never files
      } catch {
        // left to the next start's sweep
      }
    }
  }

  /**
   * Gives a mounted volume (held by one tree: a pooled kernel) a new workspace path `to`, which
   * must not exist: its image is renamed beside it and the volume bound there; the running
   * sandbox keeps its own view. The old path goes when the volume is unmounted.
   */
  async move(from: string, to: string): Promise<void> {
    const held = this.#users.get(from);
    if (!held || held.count !== 1) throw new Error(`${from} is not a volume held once`);
    await held.ready;
    mkdirSync(to, { mode: 0o700 });
    await this.#helper.bind(from, to);
    renameSync(`${from}.img`, `${to}.img`);
    for (const mount of held.mounts) if (mount.path === from) mount.remove = true;
    held.mounts.push({ path: to, remove: false });
    this.#users.delete(from);
    this.#users.set(to, held);
  }

  /** The spare for this root and quota (making the next one), or undefined. */
  #takeSpare(root: string, quota: WorkspaceQuota): Promise<Spare | undefined> {
    const key = `${root}|${quota.bytes}|${quota.inodes}`;
    const taken = this.#spares.get(key);
    const spares = `${root}.spares`;
    // A previous run may have stopped while making one (the server unmounted it at start).
    if (!taken) removeStale(spares);
    // Searchable by the pool uids, as the root is: bwrap resolves the mount point's path as them.
    ensureWorkspaceRoot(spares);
    // Replaced before anything awaits: concurrent starts never get the same spare.
    const id = randomUUID();
    const spare = { image: join(spares, `${id}.img`), mountPoint: join(spares, id) };
    this.#spares.set(
      key,
      (async () => {
        // Not while the start that took the last spare is still running: they share the CPU.
        if (taken) await new Promise((resolve) => setTimeout(resolve, SPARE_DELAY_MS));
        await formatImage(spare.image, quota);
        mkdirSync(spare.mountPoint, { mode: 0o700 });
        await mountImage(spare.image, spare.mountPoint);
        return spare;
      })().catch(async () => {
        await this.#unmount([{ path: spare.mountPoint, remove: true }]);
        rmSync(spare.image, { force: true });
        return undefined;
      }),
    );
    return taken ?? Promise.resolve(undefined);
  }

  /** Waits for spares being made (so none is left half-made), then removes them. */
  async close(): Promise<void> {
    const spares = await Promise.all(this.#spares.values());
    this.#spares.clear();
    for (const spare of spares) {
      if (!spare) continue;
      await this.#unmount([{ path: spare.mountPoint, remove: true }]);
      rmSync(spare.image, { force: true });
    }
  }
}

async function mountImage(image: string, dir: string): Promise<void> {
  // nosuid, nodev: nothing planted in a workspace can gain privileges on the host.
  await run('/usr/bin/mount', ['-o', 'loop,nosuid,nodev', image, dir]);
  try {
    rmdirSync(`${dir}/lost+found`);
  } catch {
    // already removed, or the cell keeps files there
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

/**
 * Empties a directory of spares or pooled workspaces a previous run left: images and empty mount
 * points only. Never recursive: a directory that is still a mount (an unmount that failed) holds
 * a notebook's files, and is left alone.
 */
export function removeStale(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // not made yet
  }
  for (const name of names) {
    const path = join(dir, name);
    try {
      if (lstatSync(path).isDirectory()) rmdirSync(path);
      else rmSync(path, { force: true });
    } catch {
      // still mounted, or not empty: not ours to delete
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
