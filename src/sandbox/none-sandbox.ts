/**
 * NoneSandbox: runs the command as the server's own user with no isolation at all. For
 * development on machines without bubblewrap; the server warns and stays on loopback.
 */
import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { Sandbox, SandboxExit, SandboxProcess, SandboxSpec } from './sandbox.ts';
import { prepareWorkspace } from './workspace.ts';

export class NoneSandbox implements Sandbox {
  readonly name = 'none' as const;
  readonly isolated = false;
  readonly #live = new Set<SandboxProcess>();
  #closed: Promise<void> | undefined;

  async init(): Promise<void> {}

  async spawn(spec: SandboxSpec): Promise<SandboxProcess> {
    if (spec.workspace !== undefined) await prepareWorkspace(spec.workspace, undefined);
    const child = spawn(spec.argv[0]!, spec.argv.slice(1), {
      cwd: spec.workspace ?? '/',
      env: spec.env,
      detached: true, // own process group, so kill() reaches its children
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
    });
    let killed = false;
    const exited = new Promise<SandboxExit>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        this.#live.delete(proc);
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
    return proc;
  }

  close(): Promise<void> {
    return (this.#closed ??= Promise.all([...this.#live].map((p) => p.kill())).then(() => undefined));
  }
}
