/** The JobService a server's config describes (the `job*` options of src/config.ts). */
import { availableParallelism } from 'node:os';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import type { Sandbox } from '../sandbox/sandbox.ts';
import type { Store } from '../store/store.ts';
import { JobService } from './job-service.ts';

const MiB = 1048576;

/** Jobs running at once: each holds a sandbox uid of its own. */
export const jobConcurrency = (config: Config) => config.jobConcurrency || availableParallelism();

export function jobServiceFromConfig(
  config: Config,
  deps: { store: Store; sandbox: Sandbox; log: FastifyBaseLogger; workspaceRoot: string },
): JobService {
  return new JobService({
    ...deps,
    // A directory of their own beside the notebooks' (init empties it).
    workspaceRoot: `${deps.workspaceRoot}.jobs`,
    workspaceBytes: config.jobWorkspaceMb * MiB,
    workspaceInodes: config.jobWorkspaceInodes,
    concurrency: jobConcurrency(config),
    queueSize: config.jobQueueSize,
    limits: {
      defaults: {
        wallMs: config.jobTimeoutSeconds * 1000,
        memoryBytes: config.jobMemoryMb * MiB,
        processes: config.jobProcesses,
        outputBytes: config.jobOutputBytes,
      },
      max: {
        wallMs: config.jobMaxTimeoutSeconds * 1000,
        cpuMs: config.jobMaxCpuSeconds * 1000,
        memoryBytes: config.jobMaxMemoryMb * MiB,
        processes: config.jobMaxProcesses,
        outputBytes: config.jobMaxOutputBytes,
      },
      compile: {
        wallMs: config.jobCompileTimeoutSeconds * 1000,
        memoryBytes: config.jobCompileMemoryMb * MiB,
        processes: config.jobCompileMaxProcesses,
        outputBytes: config.jobOutputBytes,
      },
      cpus: config.jobCpus,
    },
    sandboxSettings: {
      tmpBytes: config.jobTmpMb * MiB,
      openFiles: config.kernelMaxOpenFiles,
      fileBytes: config.kernelMaxFileMb * MiB,
      network: config.sandboxNetwork,
    },
  });
}
