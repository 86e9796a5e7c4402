/**
 * How each language compiles and runs a one-shot program, as data: where its toolchains may be,
 * how to ask one for its version, and the command lines. toolchains.ts finds what is installed
 * and job-runner.ts fills the placeholders:
 *
 * - `{home}`: the toolchain's directory (`/usr`, a JDK under /usr/lib/jvm);
 * - `{major}`: the first number of its version;
 * - `{source}`: the entry file; `{sources}`: every file with the entry's extension (several
 *   arguments);
 * - `{main}`: what the entry names to run (Java: its class, with its package);
 * - `{heapMb}`: `heapShare` of the step's memory limit, for runtimes that size their own heap.
 *
 * Everything runs inside the job's sandbox with /workspace as the working directory, so a
 * toolchain must live under /usr (bound read-only) plus the `binds` it names.
 */
export interface ProgramRecipe {
  language: string;
  aliases: readonly string[];
  /** Candidate toolchain directories; a trailing `/*` means every directory in it. */
  homes: readonly string[];
  /** Run on the host at start with an empty environment; the first group is the version. */
  version: { argv: readonly string[]; pattern: RegExp };
  /** Host paths the toolchain reads besides /usr, bound read-only when they exist. */
  binds?: readonly string[];
  /** File that `code` is written to. */
  sourceFile: string;
  /** `java-class`: name the file after the code's public class, as javac demands. */
  sourceNaming?: 'java-class';
  /** Done on the server before anything runs: `typescript` strips types (esbuild) into `.js`. */
  transform?: 'typescript';
  compile?: readonly string[];
  run: readonly string[];
  /** Share of the memory limit a managed heap may take ({heapMb}); the rest is for the runtime. */
  heapShare?: number;
}

const NODE_RUN = [
  '{home}/bin/node',
  // V8 sized below the cgroup: a heap that is too large fails with a heap error, not a kill.
  '--max-old-space-size={heapMb}',
  // A program may be CommonJS (require) or an ES module (import, top-level await).
  '--experimental-detect-module',
  '{source}',
];

export const PROGRAM_RECIPES: readonly ProgramRecipe[] = [
  {
    language: 'python',
    aliases: ['py', 'python3'],
    homes: ['/usr'],
    version: { argv: ['{home}/bin/python3', '--version'], pattern: /Python (\d+\.\d+\.\d+)/ },
    sourceFile: 'main.py',
    // -I: no PYTHON* variables, no user site directory.
    run: ['{home}/bin/python3', '-I', '{source}'],
  },
  {
    language: 'javascript',
    aliases: ['js', 'node'],
    homes: ['/usr'],
    version: { argv: ['{home}/bin/node', '--version'], pattern: /^v(\d+\.\d+\.\d+)/ },
    sourceFile: 'main.js',
    run: NODE_RUN,
    heapShare: 0.75,
  },
  {
    language: 'typescript',
    aliases: ['ts'],
    homes: ['/usr'],
    version: { argv: ['{home}/bin/node', '--version'], pattern: /^v(\d+\.\d+\.\d+)/ },
    sourceFile: 'main.ts',
    transform: 'typescript',
    run: NODE_RUN,
    heapShare: 0.75,
  },
  {
    language: 'java',
    aliases: ['jdk'],
    homes: ['/usr/lib/jvm/*'],
    version: { argv: ['{home}/bin/javac', '-version'], pattern: /javac (\d+(?:\.\d+)*)/ },
    // Debian's JDKs keep their configuration (java.security, ...) under /etc.
    binds: ['/etc/java-{major}-openjdk'],
    sourceFile: 'Main.java',
    sourceNaming: 'java-class',
    compile: [
      '{home}/bin/javac',
      '-J-Xmx{heapMb}m',
      '-J-XX:+UseSerialGC',
      // javac is short-lived: the first JIT tier is enough and starts faster.
      '-J-XX:TieredStopAtLevel=1',
      '-encoding',
      'UTF-8',
      '-d',
      '.',
      '{sources}',
    ],
    // Serial GC: no GC thread per core, so the process limit is not spent on them.
    run: ['{home}/bin/java', '-Xmx{heapMb}m', '-XX:+UseSerialGC', '-cp', '.', '{main}'],
    heapShare: 0.5,
  },
  {
    language: 'c',
    aliases: ['gcc'],
    homes: ['/usr'],
    version: { argv: ['{home}/bin/gcc', '-dumpfullversion'], pattern: /^(\d+(?:\.\d+)*)/ },
    sourceFile: 'main.c',
    compile: ['{home}/bin/gcc', '-O2', '-pipe', '-std=gnu17', '-o', 'main', '{sources}', '-lm'],
    run: ['./main'],
  },
  {
    language: 'cpp',
    aliases: ['c++', 'g++'],
    homes: ['/usr'],
    version: { argv: ['{home}/bin/g++', '-dumpfullversion'], pattern: /^(\d+(?:\.\d+)*)/ },
    sourceFile: 'main.cpp',
    compile: ['{home}/bin/g++', '-O2', '-pipe', '-std=gnu++20', '-o', 'main', '{sources}'],
    run: ['./main'],
  },
  {
    language: 'rust',
    aliases: ['rs', 'rustc'],
    // rustup's toolchains under /root are not reachable by the sandbox uids: Debian's rustc.
    homes: ['/usr/local', '/usr'],
    version: { argv: ['{home}/bin/rustc', '--version'], pattern: /rustc (\d+\.\d+\.\d+)/ },
    sourceFile: 'main.rs',
    // The entry only: rustc finds the other modules through its `mod` items.
    compile: ['{home}/bin/rustc', '-O', '--edition', '2021', '-o', 'main', '{source}'],
    run: ['./main'],
  },
  {
    language: 'bash',
    aliases: ['sh', 'shell'],
    homes: ['/usr'],
    version: { argv: ['{home}/bin/bash', '--version'], pattern: /version (\d+\.\d+\.\d+)/ },
    sourceFile: 'main.sh',
    run: ['{home}/bin/bash', '{source}'],
  },
];
