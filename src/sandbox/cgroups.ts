/**
 * Per-process-tree cgroups: the memory and process limits, the out-of-memory verdict, and the
 * only reliable way to kill a sandbox tree (a process-group kill does not reach inside a
 * `--new-session` sandbox, and daemonized children leave the group anyway).
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
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
  /** CPU time used by every process of the cgroup so far, or undefined if not accounted. */
  cpuTimeMs(): number | undefined;
  /** The most memory the cgroup held at once so far, or undefined if not accounted. */
  peakMemoryBytes(): number | undefined;
  /** True when a fork or clone in this cgroup failed because of the process limit. */
  pidsLimitHit(): boolean;
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

function readNumber(file: string): number | undefined {
  try {
    const value = Number(readFileSync(file, 'utf8'));
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** pids.events counts the forks the limit refused (`max N`), in v1 and v2 alike. */
function pidsLimitHit(dir: string): boolean {
  try {
    return /^max [1-9]/m.test(readFileSync(join(dir, 'pids.events'), 'utf8'));
  } catch {
    return false;
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
  /** Hierarchies we use, resolved (cpu and cpuacct are often one, mounted as `cpu,cpuacct`). */
  readonly #roots: { memory: string; pids: string; cpu?: string; cpuacct?: string };
  constructor(instance: string) {
    const root = (controller: string) => {
      const dir = join(ROOT, controller);
      return existsSync(join(dir, 'cgroup.procs')) ? join(realpathSync(dir), 'runcell', instance) : undefined;
    };
    this.#roots = {
      memory: root('memory')!,
      pids: root('pids')!,
      cpu: root('cpu'),
      cpuacct: root('cpuacct'),
    };
  }
  #dirs(): string[] {
    return [...new Set(Object.values(this.#roots).filter((d): d is string => d !== undefined))];
  }
  sweep(): Promise<number> {
    return sweepChildren(this.#dirs());
  }
  create(name: string, limits: CgroupLimits): Cgroup {
    const dirs = this.#dirs().map((d) => join(d, name));
    for (const dir of dirs) mkdirSync(dir, { recursive: true });
    const [memory, pids] = [join(this.#roots.memory, name), join(this.#roots.pids, name)];
    const cpu = this.#roots.cpu && join(this.#roots.cpu, name);
    const cpuacct = this.#roots.cpuacct && join(this.#roots.cpuacct, name);
    if (cpu && limits.cpus > 0) {
      writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
      writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * CFS_PERIOD_US)));
    }
    writeFileSync(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
    // Without swap accounting the limit could be dodged by swapping out.
    const memsw = join(memory, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) writeFileSync(memsw, String(limits.memoryBytes));
    writeFileSync(join(pids, 'pids.max'), String(limits.maxProcesses));
    const killAll = async () => {
      for (const dir of dirs) await killMembers(join(dir, 'cgroup.procs'));
    };
    return {
      procsFiles: dirs.map((d) => join(d, 'cgroup.procs')),
      oomKilled: () => {
        try {
          return /^oom_kill [1-9]/m.test(readFileSync(join(memory, 'memory.oom_control'), 'utf8'));
        } catch {
          return false;
        }
      },
      cpuTimeMs: () => {
        if (!cpuacct) return undefined;
        try {
          return Number(readFileSync(join(cpuacct, 'cpuacct.usage'), 'utf8')) / 1e6;
        } catch {
          return undefined;
        }
      },
      peakMemoryBytes: () => readNumber(join(memory, 'memory.max_usage_in_bytes')),
      pidsLimitHit: () => pidsLimitHit(pids),
      killAll,
      destroy: once(async () => {
        await killAll();
        for (const dir of dirs) await removeDir(dir);
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
      cpuTimeMs: () => {
        try {
          const usec = /^usage_usec (\d+)/m.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'))?.[1];
          return usec === undefined ? undefined : Number(usec) / 1000;
        } catch {
          return undefined;
        }
      },
      // memory.peak needs Linux 5.19.
      peakMemoryBytes: () => readNumber(join(dir, 'memory.peak')),
      pidsLimitHit: () => pidsLimitHit(dir),
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
