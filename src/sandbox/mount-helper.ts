/**
 * MountHelper: one long-lived root process (mount-helper.py) that makes mount syscalls for the
 * server, so a mount costs a line on a pipe (~0.1 ms) rather than a mount(8) process (~10 ms
 * from Node). Requests are answered in order, one line each. Used for job workspaces (tmpfs)
 * and for handing notebook volumes to their workspace path (bind).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const HELPER = readFileSync(new URL('./mount-helper.py', import.meta.url), 'utf8');

export class MountHelper {
  readonly #python: string;
  #child: ChildProcess | undefined;
  #closed = false;
  readonly #pending: { resolve: () => void; reject: (err: Error) => void }[] = [];

  /** Debian's interpreter, whatever the kernels use: this runs as root, on the host. */
  constructor(python = '/usr/bin/python3') {
    this.#python = python;
  }

  /** A fresh tmpfs on the (empty) directory. */
  tmpfs(dir: string, bytes: number, inodes: number): Promise<void> {
    return this.#request(`mount ${bytes} ${inodes} ${checked(dir)}`);
  }

  /** Binds the directory (a mounted volume) at `to` too; nosuid, nodev like the volume. */
  bind(from: string, to: string): Promise<void> {
    return this.#request(`bind ${checked(from)}\t${checked(to)}`);
  }

  /** Detaches the mount (lazily: a straggling reference cannot keep it busy). */
  umount(dir: string): Promise<void> {
    return this.#request(`umount ${checked(dir)}`);
  }

  #request(line: string): Promise<void> {
    const child = (this.#child ??= this.#start());
    hold(child, true);
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      child.stdin!.write(`${line}\n`);
    });
  }

  #start(): ChildProcess {
    const child = spawn(this.#python, ['-I', '-S', '-c', HELPER], {
      env: {},
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    child.stdin!.on('error', () => {});
    child.once('error', (err) => {
      if (this.#child === child) this.#child = undefined;
      for (const p of this.#pending.splice(0)) p.reject(new Error(`mount helper: ${err.message}`));
    });
    createInterface({ input: child.stdout! }).on('line', (answer) => {
      const pending = this.#pending.shift();
      // After close(), a kernel that ends late still detaches its volume, but an idle helper
      // must not keep the server's process alive (it exits when the pipe closes with it).
      if (this.#closed && this.#pending.length === 0) hold(child, false);
      if (answer === 'ok') pending?.resolve();
      else pending?.reject(new Error(`mount helper: ${answer}`));
    });
    // Started again by the next request; what was asked of this one fails.
    child.once('exit', (code, signal) => {
      if (this.#child === child) this.#child = undefined;
      for (const p of this.#pending.splice(0)) p.reject(new Error(`mount helper exited (${signal ?? code})`));
    });
    return child;
  }

  close(): void {
    this.#closed = true;
    this.#child?.stdin!.end();
    this.#child = undefined;
  }
}

/** Whether the helper (process and pipes) keeps Node's event loop alive. */
function hold(child: ChildProcess, on: boolean): void {
  for (const handle of [child, child.stdin, child.stdout] as unknown as { ref(): void; unref(): void }[]) {
    if (on) handle.ref();
    else handle.unref();
  }
}

/** Paths travel in a line, the last one after a tab. */
function checked(path: string): string {
  if (/[\t\n]/.test(path)) throw new Error(`path ${JSON.stringify(path)} has a tab or a line break`);
  return path;
}
