/**
 * Shared pieces of the exploit suite: a runcell with small limits, a bystander notebook that must
 * keep its context and answer promptly whatever an attacker does, and a view of the host's
 * process table.
 *
 * Every file starts its own app with its own sandbox uid range (SUITE_UID_BASE + 100 * n), so a
 * check of "no process of this range is left" is not confused by another file running at the
 * same time.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { expect } from 'vitest';
import type { Config } from '../../src/config.ts';
import { finalStatus, notebookId, run, startApp, submit, type StatusBody } from '../helpers.ts';

export { finalStatus, notebookId, run, submit, type StatusBody };

/** Pool uids of this suite: 63000-63999, far from the default 61000 and the sandbox tests' 62000. */
export const SUITE_UID_BASE = 63000;
/** The suite's range is split in slots of this many uids, one per running app. */
const UID_SLOT = 50;
const UID_SLOTS = 20;
export const MAX_KERNELS = 32;

/** Limits small enough that every attack hits them within a second or two. */
export const LIMITS = {
  kernelMemoryMb: 256,
  kernelMaxProcesses: 64,
  maxOutputBytes: 65536,
  interruptGraceMs: 1000,
  kernelTmpMb: 16,
  kernelMaxOpenFiles: 256,
  kernelMaxFileMb: 8,
  maxKernels: MAX_KERNELS,
  cellTimeoutSeconds: 3,
} satisfies Partial<Config>;

/** How long a bystander's trivial cell may take, attack or not. */
export const PROMPT_MS = 3000;

export interface SecurityApp {
  app: FastifyInstance;
  uidBase: number;
  uidCount: number;
}

const slotLock = (base: number) => join(tmpdir(), `runcell-security-uids-${base}.lock`);

/**
 * Claims a slot of the suite's uid range for one app, so that apps running at the same time
 * (the files of one run, or two runs of the suite) never share pool uids: a shared uid would let
 * one run's notebooks reach the other's, and confuse every check of "no process of this uid is
 * left". A slot is held by a lock file naming the holder's pid; a dead holder's slot is taken over.
 */
function claimUidSlot(): number {
  for (let slot = 0; slot < UID_SLOTS; slot++) {
    const base = SUITE_UID_BASE + slot * UID_SLOT;
    const lock = slotLock(base);
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return base;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(readFileSync(lock, 'utf8'));
    let alive = holder > 0;
    try {
      if (alive) process.kill(holder, 0);
    } catch {
      alive = false;
    }
    if (alive) continue;
    try {
      rmSync(lock);
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return base;
    } catch {
      // someone else took it over first: try the next slot
    }
  }
  throw new Error(`all ${UID_SLOTS} uid slots of the security suite are taken`);
}

/** A real runcell whose kernels run as host uids of a slot of its own: uidBase..+MAX_KERNELS-1. */
export async function startSecurityApp(overrides: Partial<Config> = {}): Promise<SecurityApp> {
  const uidBase = claimUidSlot();
  try {
    const app = await startApp({ ...LIMITS, sandboxUidBase: uidBase, ...overrides });
    return { app, uidBase, uidCount: MAX_KERNELS };
  } catch (err) {
    rmSync(slotLock(uidBase), { force: true });
    throw err;
  }
}

/**
 * Closes the app, then checks the host: not one live process of this app's uid range may be
 * left, whatever the file's attacks started.
 */
export async function closeAndCheck(sa: SecurityApp): Promise<void> {
  try {
    await sa.app.close();
    const left = hostProcesses().filter(
      (p) => p.uid >= sa.uidBase && p.uid < sa.uidBase + sa.uidCount && !p.stat.startsWith('Z'),
    );
    expect(left.map((p) => `${p.uid} ${p.args.slice(0, 60)}`)).toEqual([]);
  } finally {
    rmSync(slotLock(sa.uidBase), { force: true });
  }
}

export async function reset(app: FastifyInstance, notebook: string): Promise<void> {
  const res = await app.inject({ method: 'POST', url: `/api/reset/${notebook}` });
  expect(res.statusCode).toBe(200);
}

export async function notebookActive(app: FastifyInstance, notebook: string): Promise<boolean> {
  const res = await app.inject({ method: 'GET', url: `/notebookstatus/${notebook}` });
  return res.json().active === true;
}

/**
 * Runs one Python (or JavaScript) cell whose last output line is JSON, and returns it parsed
 * together with the result. Fails the test with the whole output if the line is not JSON.
 */
export async function runJson<T = Record<string, unknown>>(
  app: FastifyInstance,
  notebook: string,
  code: string,
  extra: Record<string, unknown> = {},
): Promise<{ data: T; status: StatusBody }> {
  const status = await run(app, notebook, [code], extra);
  const result = status.results[0];
  const lines = (result?.output ?? '').trimEnd().split('\n');
  try {
    return { data: JSON.parse(lines.at(-1)!) as T, status };
  } catch {
    throw new Error(`expected a JSON line, got ${result?.type}: ${result?.output}`);
  }
}

/**
 * A notebook that minds its own business: started before an attack with a variable set, it must
 * still have the variable, in the same kernel, and answer a trivial cell within PROMPT_MS.
 */
export class Bystander {
  readonly notebook: string;
  readonly #app: FastifyInstance;
  readonly #token = `bystander-${randomUUID()}`;
  /** Round trips of every check, for the record. */
  readonly timings: number[] = [];

  private constructor(app: FastifyInstance, notebook: string) {
    this.#app = app;
    this.notebook = notebook;
  }

  static async start(app: FastifyInstance): Promise<Bystander> {
    const b = new Bystander(app, notebookId('bystander'));
    const status = await run(app, b.notebook, [`bystander_token = ${JSON.stringify(b.#token)}`]);
    expect(status.results[0], 'the bystander starts').toMatchObject({ type: 'output', output: '' });
    return b;
  }

  /** The variable is still there, the context was not lost, and the answer came promptly. */
  async check(when = 'after the attack'): Promise<void> {
    const started = performance.now();
    const status = await run(this.#app, this.notebook, ['print(bystander_token)'], { timeout: 10 });
    const ms = performance.now() - started;
    this.timings.push(ms);
    const result = status.results[0]!;
    expect({ when, type: result.type, output: result.output, contextLost: result.contextLost }).toEqual({
      when,
      type: 'output',
      output: `${this.#token}\n`,
      contextLost: false,
    });
    expect(ms, `bystander round trip ${when}`).toBeLessThan(PROMPT_MS);
  }
}

/**
 * Submits the attack, checks the bystander while it runs (once the attack cell has had a moment
 * to get going) and again once it is over, and returns the attack's final status.
 */
export async function underAttack(
  app: FastifyInstance,
  bystander: Bystander,
  body: { notebookId: string; cells: { cellId: string; code: string; language?: string }[] } & Record<
    string,
    unknown
  >,
  runningForMs = 400,
): Promise<StatusBody> {
  const id = await submit(app, body);
  // Wait until the attack runs (or already ended), then give it a moment to do damage.
  const deadline = Date.now() + 5000;
  for (;;) {
    const res = await app.inject({ method: 'GET', url: `/api/status/${id}` });
    const state = res.json().state as string;
    if (state !== 'pending' || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, runningForMs));
  await bystander.check('while the attack runs');
  const status = await finalStatus(app, id);
  await bystander.check('after the attack');
  return status;
}

/** One attack cell, as a submission body. */
export function attack(
  notebook: string,
  code: string,
  extra: Record<string, unknown> = {},
): { notebookId: string; cells: { cellId: string; code: string }[] } & Record<string, unknown> {
  return { notebookId: notebook, cells: [{ cellId: 'attack', code }], ...extra };
}

export interface HostProcess {
  pid: number;
  uid: number;
  stat: string;
  args: string;
}

/** The host's process table, as root sees it. */
export function hostProcesses(): HostProcess[] {
  // Kernels' command lines hold their whole driver source: allow for a big table.
  return execFileSync('/bin/ps', ['-eo', 'pid=,uid=,stat=,args='], { encoding: 'utf8', maxBuffer: 1 << 30 })
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ pid: Number(m[1]), uid: Number(m[2]), stat: m[3]!, args: m[4]! }));
}

/** Live (not zombie: those are dead, awaiting their reaper) processes of one host uid. */
export function liveProcessesOf(uid: number): HostProcess[] {
  return hostProcesses().filter((p) => p.uid === uid && !p.stat.startsWith('Z'));
}

/** Live host processes whose command line contains `marker`. */
export function liveProcessesWith(marker: string): HostProcess[] {
  return hostProcesses().filter((p) => p.args.includes(marker) && !p.stat.startsWith('Z'));
}

/** Waits (briefly) for a process with `marker` in its command line to show up on the host. */
export async function waitForHostProcess(marker: string, timeoutMs = 3000): Promise<HostProcess> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = liveProcessesWith(marker).filter((p) => !p.args.includes('/bin/ps'));
    if (found.length > 0) return found[0]!;
    if (Date.now() > deadline) throw new Error(`no host process with ${JSON.stringify(marker)} appeared`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A marker unlikely to appear in any other process's command line: a sleep duration. */
export function uniqueSleepSeconds(): number {
  return 100000 + Math.floor(Math.random() * 800000);
}

export const py = String.raw;
