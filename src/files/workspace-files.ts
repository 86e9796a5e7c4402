/**
 * WorkspaceFiles: list, download, upload and delete files of a notebook's workspace. Every
 * operation runs in a sandbox of its own, as the notebook's uid, with the workspace bound as the
 * kernels see it (file-op.py): the server process never opens a path inside a workspace, so no
 * symlink or hard link a cell planted can lead it to a host file.
 */
import { ownerOf } from '../kernels/kernel.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Config } from '../config.ts';
import { RuncellError, type ErrorName } from '../errors.ts';
import { KERNEL_ENV } from '../kernels/kernel-driver.ts';
import type { Sandbox, SandboxExit, SandboxProcess } from '../sandbox/sandbox.ts';

const SCRIPT = readFileSync(new URL('./file-op.py', import.meta.url), 'utf8');
const MAX_LISTING_BYTES = 16 << 20;
const MAX_MESSAGE_BYTES = 4096;

/** file-op.py's exit codes. */
const EXIT_ERRORS: Record<number, ErrorName> = {
  2: 'FILE_NOT_FOUND',
  3: 'FILE_WRONG_TYPE',
  4: 'FILE_SYMLINK',
  5: 'FILE_NO_SPACE',
  6: 'FILE_PATH_INVALID',
};

export interface FileEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  modified: number;
}

type Op = 'list' | 'read' | 'write' | 'delete';

export class WorkspaceFiles {
  readonly #sandbox: Sandbox;
  readonly #config: Config;
  /** What each operation's process said on stderr, for the error message. */
  readonly #messages = new WeakMap<SandboxProcess, () => string>();

  constructor(sandbox: Sandbox, config: Config) {
    this.#sandbox = sandbox;
    this.#config = config;
  }

  async list(notebookId: string, path: string): Promise<FileEntry[]> {
    const proc = await this.#start(notebookId, 'list', path);
    const chunks: Buffer[] = [];
    let size = 0;
    proc.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_LISTING_BYTES) void proc.kill();
      else chunks.push(chunk);
    });
    await this.#check(proc);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as FileEntry[];
  }

  /**
   * The file's bytes as a stream, once it is known to be readable (errors before the first
   * byte are thrown, so the caller can still answer with a 4xx).
   */
  async read(notebookId: string, path: string): Promise<Readable> {
    const proc = await this.#start(notebookId, 'read', path);
    let peek!: (chunk: Buffer) => void;
    const first = await Promise.race([
      new Promise<'data'>((resolve) => {
        peek = (chunk) => {
          proc.stdout.pause();
          proc.stdout.unshift(chunk); // only peeked: the caller gets every byte
          resolve('data');
        };
        proc.stdout.once('data', peek);
      }),
      proc.exited.then(() => 'exit' as const),
    ]);
    proc.stdout.off('data', peek);
    proc.stdout.pause();
    if (first === 'exit') await this.#check(proc);
    // A download that fails half-way cannot change its status any more: the stream errors.
    void this.#check(proc).catch((err) => proc.stdout.destroy(err));
    return proc.stdout;
  }

  /** Writes `body` to the file (parents created); returns the bytes written. */
  async write(notebookId: string, path: string, body: Readable): Promise<number> {
    const proc = await this.#start(notebookId, 'write', path);
    let size = 0;
    let tooLarge = false;
    body.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > this.#config.maxUploadBytes && !tooLarge) {
        tooLarge = true;
        void proc.kill();
        body.resume();
      }
    });
    body.pipe(proc.requests);
    body.on('error', () => void proc.kill());
    const exit = await proc.exited;
    if (tooLarge) {
      throw new RuncellError('FILE_TOO_LARGE', `uploads are limited to ${this.#config.maxUploadBytes} bytes`);
    }
    await this.#check(proc, exit);
    return size;
  }

  async remove(notebookId: string, path: string): Promise<void> {
    await this.#check(await this.#start(notebookId, 'delete', path));
  }

  async #start(notebookId: string, op: Op, path: string): Promise<SandboxProcess> {
    const config = this.#config;
    const proc = await this.#sandbox.spawn({
      owner: ownerOf(notebookId),
      argv: [config.pythonPath, '-I', '-c', SCRIPT, op, path],
      workspace: join(config.workspaceDir, notebookId),
      workspaceQuota:
        config.workspaceMb > 0
          ? { bytes: config.workspaceMb * 1048576, inodes: config.workspaceInodes }
          : undefined,
      env: { ...KERNEL_ENV },
      // A small fixed budget: the operation is our own short script (it streams, never holds a
      // file in memory); what it may write is bounded by the notebook's file size and quota.
      limits: {
        memoryBytes: 128 << 20,
        maxProcesses: 8,
        tmpBytes: 1 << 20,
        cpus: 1,
        openFiles: 64,
        fileBytes: config.kernelMaxFileMb * 1048576,
      },
      network: false,
    });
    let message = '';
    proc.stderr.on('data', (chunk: Buffer) => {
      if (message.length < MAX_MESSAGE_BYTES) message += chunk.toString('utf8');
    });
    this.#messages.set(proc, () => message);
    if (op !== 'write') proc.requests.end();
    return proc;
  }

  async #check(proc: SandboxProcess, exit?: SandboxExit): Promise<void> {
    const { code, signal } = exit ?? (await proc.exited);
    if (code === 0) return;
    const message = this.#messages.get(proc)?.().trim().slice(0, MAX_MESSAGE_BYTES) ?? '';
    const name = code === null ? undefined : EXIT_ERRORS[code];
    if (name) throw new RuncellError(name, message || undefined);
    throw new RuncellError('INTERNAL', `file operation failed (${signal ?? `exit ${code}`}): ${message}`);
  }
}
