/**
 * JobWorkspaces: each job's private /workspace, made for it and gone after it.
 *
 * As root, a workspace is a tmpfs of its own (size and inode limits, nosuid, nodev), so a job
 * that fills it gets ENOSPC and never touches the host's disk; its pages count against the
 * job's memory cgroup. Removing it is an unmount: the host never walks the tree the job left,
 * which may hold symlinks, FIFOs, unreadable or very deep directories. The mounts go through one
 * long-lived helper (src/sandbox/mount-helper.py), so a job does not pay for two mount(8) processes.
 *
 * Without root (no mounts; the sandbox then runs as the server's uid anyway), a workspace is a
 * plain directory, removed with fs.rm, which unlinks symlinks and never follows them.
 */
import { execFile } from 'node:child_process';
import { readdirSync, rmdirSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyBaseLogger } from 'fastify';
import { MountHelper } from '../sandbox/mount-helper.ts';
import { sweepVolumes } from '../sandbox/workspace-volume.ts';
import { ensureWorkspaceRoot } from '../sandbox/workspace.ts';

const run = promisify(execFile);

export interface JobWorkspacesOptions {
  /** Directory of the job workspaces; every directory above it must be searchable by others. */
  root: string;
  /** Bytes and inodes of each workspace when it is its own tmpfs; 0 bytes: plain directories. */
  bytes: number;
  inodes: number;
  log: FastifyBaseLogger;
}

export class JobWorkspaces {
  readonly #options: JobWorkspacesOptions;
  readonly #mounted: boolean;
  #helper: MountHelper | undefined;

  constructor(options: JobWorkspacesOptions) {
    this.#options = options;
    this.#mounted = process.getuid?.() === 0 && options.bytes > 0;
  }

  /** Creates the root and removes what a previous run left (it may have been killed mid-job). */
  async init(): Promise<void> {
    const { root, log } = this.#options;
    ensureWorkspaceRoot(root);
    if (process.getuid?.() === 0) await sweepVolumes(root);
    const stale = readdirSync(root);
    for (const name of stale) await this.#removeTree(join(root, name));
    if (stale.length > 0) log.warn({ stale: stale.length }, 'removed job workspaces a previous run left');
    if (this.#mounted) this.#helper = new MountHelper();
  }

  /** A fresh, empty workspace for the job. */
  async create(jobId: string): Promise<string> {
    const dir = join(this.#options.root, jobId);
    await mkdir(dir, { mode: 0o700 });
    if (this.#helper) {
      try {
        await this.#helper.tmpfs(dir, this.#options.bytes, this.#options.inodes);
      } catch (err) {
        rmdirSync(dir);
        throw err;
      }
    }
    return dir;
  }

  /** Removes the workspace once every process of the job is dead. */
  async remove(dir: string): Promise<void> {
    if (this.#helper) {
      try {
        await this.#helper.umount(dir);
        rmdirSync(dir);
        return;
      } catch (err) {
        this.#options.log.error({ err, dir }, 'could not unmount a job workspace; removing its files');
      }
    }
    await this.#removeTree(dir);
  }

  async #removeTree(dir: string): Promise<void> {
    try {
      await rm(dir, { recursive: true, force: true });
    } catch {
      // Deeper than PATH_MAX: coreutils walks it relative to each directory.
      await run('/usr/bin/rm', ['-rf', '--one-file-system', '--', dir]);
    }
  }

  close(): void {
    this.#helper?.close();
  }
}
