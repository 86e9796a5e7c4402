/**
 * NoneSandbox: runs the command as the server's own user with no isolation at all. For
 * development on machines without bubblewrap; the server warns and stays on loopback.
 */
import { spawn } from 'node:child_process';
import { existsSync, renameSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { Sandbox, SandboxExit, SandboxProcess, SandboxSpec } from './sandbox.ts';
import { writeStdin } from './bwrap-sandbox.ts';
import { prepareWorkspace } from './workspace.ts';

export class NoneSandbox implements Sandbox {
  readonly name = 'none' as const;
  readonly isolated = false;
  readonly #live = new Set<SandboxProcess>();
  readonly #workspaces = new Map<SandboxProcess, string>();
  #closed: Promise<void> | undefined;

  async init(): Promise<void> {}

  async spawn(spec: SandboxSpec): Promise<SandboxProcess> {
    if (spec.workspace !== undefined) await prepareWorkspace(spec.workspace, undefined);
    const child = spawn(spec.argv[0]!, spec.argv.slice(1), {
      cwd: spec.workspace ?? '/',
      env: spec.env,
      detached: true, // own process group, so kill() reaches its children
      stdio: [spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
    });
    writeStdin(child, spec.stdin);
    let killed = false;
    const exited = new Promise<SandboxExit>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        this.#live.delete(proc);
        this.#workspaces.delete(proc);
        resolve({ code, signal, reason: killed ? 'killed' : 'exited' });
      };
      child.once('error', () => done(null, null));
      child.once('exit', done);
    });
    const proc: SandboxProcess = {
      stdout: child.stdio[1] as Readable,
      stderr: child.stdio[2] as Readable,
      requests: (child.stdio[3] as Writable).on('error', () => {}),
      events: child.stdio[4] as Readable,
      exited,
      cpuTimeMs: () => undefined,
      peakMemoryBytes: () => undefined,
      pidsLimitHit: () => false,
      kill: () => {
        if (!killed && child.pid !== undefined) {
          killed = true;
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        return exited;
      },
    };
    this.#live.add(proc);
    if (spec.workspace !== undefined) this.#workspaces.set(proc, spec.workspace);
    return proc;
  }

  async transfer(proc: SandboxProcess, to: { owner: string; workspace: string }): Promise<void> {
    const from = this.#workspaces.get(proc);
    if (from === undefined) throw new Error('not a live process with a workspace');
    if (existsSync(to.workspace)) throw new Error(`${to.workspace} exists`);
    renameSync(from, to.workspace); // the process's working directory moves with it
    this.#workspaces.set(proc, to.workspace);
  }

  close(): Promise<void> {
    return (this.#closed ??= Promise.all([...this.#live].map((p) => p.kill())).then(() => undefined));
  }
}
