/**
 * Per-process-tree cgroups: the memory and process limits, the out-of-memory verdict, and the
 * only reliable way to kill a sandbox tree (a process-group kill does not reach inside a
 * `--new-session` sandbox, and daemonized children leave the group anyway).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface CgroupLimits {
  memoryBytes: number;
  maxProcesses: number;
  /** Cores at most; 0 for no cap. All kernels share one parent group, so together they get
   * the same CPU weight as the server itself and cannot starve it. */
  cpus: number;
}

const CFS_PERIOD_US = 100_000;

export interface Cgroup {
  /** Files a pid is written to so the process joins this cgroup. */
  readonly procsFiles: string[];
  /** True when the kernel's OOM killer fired inside this cgroup. */
  oomKilled(): boolean;
  /** SIGKILLs every member until none is left. */
  killAll(): Promise<void>;
  /** Kills every member and removes the cgroup. Idempotent. */
  destroy(): Promise<void>;
}

export interface Cgroups {
  readonly version: 1 | 2;
  create(name: string, limits: CgroupLimits): Cgroup;
  /**
   * Kills and removes what a previous run of this server instance left (it was killed before it
   * could clean up): no process of an old sandbox outlives a restart.
   */
  sweep(): Promise<number>;
}

const ROOT = '/sys/fs/cgroup';

function readPids(file: string): number[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function killMembers(procsFile: string): Promise<void> {
  // Members can fork while we kill; the pids limit bounds that, and we loop until empty.
  for (let round = 0; round < 500; round++) {
    const pids = readPids(procsFile);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await sleep(round < 10 ? 2 : 20);
  }
  throw new Error(`processes in ${procsFile} survived SIGKILL`);
}

async function removeDir(dir: string): Promise<void> {
  for (let round = 0; round < 100; round++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY') throw err;
      await sleep(10);
    }
  }
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

/** The per-sandbox cgroups under `dirs` left by an earlier run: kill their members, remove them. */
async function sweepChildren(dirs: string[]): Promise<number> {
  let swept = 0;
  for (const dir of dirs) {
    let children: string[] = [];
    try {
      children = readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => join(dir, e.name));
    } catch {
      continue; // never created
    }
    for (const child of children) {
      await killMembers(join(child, 'cgroup.procs'));
      await removeDir(child);
      swept++;
    }
  }
  return swept;
}

class CgroupsV1 implements Cgroups {
  readonly version = 1;
  readonly #hasCpu = existsSync(join(ROOT, 'cpu', 'cgroup.procs'));
  readonly #instance: string;
  constructor(instance: string) {
    this.#instance = instance;
  }
  #dir(controller: string, name = ''): string {
    return join(ROOT, controller, 'runcell', this.#instance, name);
  }
  sweep(): Promise<number> {
    return sweepChildren(['pids', 'memory', ...(this.#hasCpu ? ['cpu'] : [])].map((c) => this.#dir(c)));
  }
  create(name: string, limits: CgroupLimits): Cgroup {
    const memory = this.#dir('memory', name);
    const pids = this.#dir('pids', name);
    const cpu = this.#hasCpu ? this.#dir('cpu', name) : undefined;
    mkdirSync(memory, { recursive: true });
    mkdirSync(pids, { recursive: true });
    if (cpu) {
      mkdirSync(cpu, { recursive: true });
      if (limits.cpus > 0) {
        writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
        writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * CFS_PERIOD_US)));
      }
    }
    writeFileSync(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
    // Without swap accounting the limit could be dodged by swapping out.
    const memsw = join(memory, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) writeFileSync(memsw, String(limits.memoryBytes));
    writeFileSync(join(pids, 'pids.max'), String(limits.maxProcesses));
    const killAll = async () => {
      await killMembers(join(pids, 'cgroup.procs'));
      await killMembers(join(memory, 'cgroup.procs'));
    };
    return {
      procsFiles: [
        join(memory, 'cgroup.procs'),
        join(pids, 'cgroup.procs'),
        ...(cpu ? [join(cpu, 'cgroup.procs')] : []),
      ],
      oomKilled: () => {
        try {
          return /^oom_kill [1-9]/m.test(readFileSync(join(memory, 'memory.oom_control'), 'utf8'));
        } catch {
          return false;
        }
      },
      killAll,
      destroy: once(async () => {
        await killAll();
        await removeDir(memory);
        await removeDir(pids);
        if (cpu) await removeDir(cpu);
      }),
    };
  }
}

class CgroupsV2 implements Cgroups {
  readonly version = 2;
  readonly #base: string;
  constructor(instance: string) {
    const top = join(ROOT, 'runcell');
    const base = join(top, instance);
    this.#base = base;
    mkdirSync(base, { recursive: true });
    const controllers = readFileSync(join(ROOT, 'cgroup.controllers'), 'utf8').includes('cpu')
      ? '+memory +pids +cpu'
      : '+memory +pids';
    for (const dir of [ROOT, top, base]) writeFileSync(join(dir, 'cgroup.subtree_control'), controllers);
  }
  sweep(): Promise<number> {
    return sweepChildren([this.#base]);
  }
  create(name: string, limits: CgroupLimits): Cgroup {
    const dir = join(this.#base, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'memory.max'), String(limits.memoryBytes));
    if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
    writeFileSync(join(dir, 'pids.max'), String(limits.maxProcesses));
    if (limits.cpus > 0 && existsSync(join(dir, 'cpu.max'))) {
      writeFileSync(join(dir, 'cpu.max'), `${Math.round(limits.cpus * CFS_PERIOD_US)} ${CFS_PERIOD_US}`);
    }
    const killAll = async () => {
      writeFileSync(join(dir, 'cgroup.kill'), '1');
      await killMembers(join(dir, 'cgroup.procs'));
    };
    return {
      procsFiles: [join(dir, 'cgroup.procs')],
      oomKilled: () => {
        try {
          return /^oom_kill [1-9]/m.test(readFileSync(join(dir, 'memory.events'), 'utf8'));
        } catch {
          return false;
        }
      },
      killAll,
      destroy: once(async () => {
        await killAll();
        await removeDir(dir);
      }),
    };
  }
}

/**
 * The cgroup hierarchy this host offers us, or the reason there is none. `instance` keys this
 * server (its data directory), so servers sharing a machine never sweep each other's sandboxes.
 */
export function detectCgroups(instance: string): Cgroups | string {
  if (process.getuid?.() !== 0) return 'not running as root';
  const controllers = join(ROOT, 'cgroup.controllers');
  if (existsSync(controllers)) {
    const have = readFileSync(controllers, 'utf8').split(/\s+/);
    if (!have.includes('memory') || !have.includes('pids'))
      return 'cgroup v2 lacks the memory or pids controller';
    return new CgroupsV2(instance);
  }
  if (existsSync(join(ROOT, 'memory', 'cgroup.procs')) && existsSync(join(ROOT, 'pids', 'cgroup.procs'))) {
    return new CgroupsV1(instance);
  }
  return 'no memory and pids cgroup hierarchy is mounted';
}
