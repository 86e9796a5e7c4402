import { join } from 'node:path';
import { BwrapSandbox } from '../../src/sandbox/bwrap-sandbox.ts';
import { JobService, type JobServiceOptions } from '../../src/jobs/job-service.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { silentLog, tempDir } from '../helpers.ts';

const MiB = 1048576;

/**
 * A JobService on real bubblewrap and SQLite in a fresh directory. The jobs tests share the uid
 * range 62500-62507: each file takes its own slice (`uidBase`, `uidCount`), since they run in parallel.
 */
export async function startJobs(
  uids: { uidBase: number; uidCount: number },
  overrides: Partial<JobServiceOptions> = {},
  dir = tempDir('runcell-jobs-'),
) {
  const sandbox = new BwrapSandbox({
    ...uids,
    instance: `jobs-test-${process.pid}-${uids.uidBase}`,
    log: silentLog,
  });
  await sandbox.init();
  const store = new SqliteStore(join(dir, 'runcell.db'));
  await store.init();
  const jobs = new JobService({
    store,
    sandbox,
    log: silentLog,
    workspaceRoot: join(dir, 'jobs'),
    workspaceBytes: 64 * MiB,
    workspaceInodes: 4096,
    concurrency: 2,
    queueSize: 8,
    limits: {
      defaults: { wallMs: 10_000, memoryBytes: 256 * MiB, processes: 64, outputBytes: 64 * 1024 },
      max: { wallMs: 60_000, cpuMs: 60_000, memoryBytes: 1024 * MiB, processes: 256, outputBytes: 1 * MiB },
      compile: { wallMs: 60_000, memoryBytes: 1024 * MiB, processes: 128, outputBytes: 64 * 1024 },
      cpus: 1,
    },
    sandboxSettings: { tmpBytes: 64 * MiB, openFiles: 256, fileBytes: 64 * MiB, network: false },
    ...overrides,
  });
  await jobs.init();
  return {
    jobs,
    store,
    dir,
    async close() {
      await jobs.close();
      await sandbox.close();
      await store.close();
    },
  };
}
