/**
 * Finding JDKs and compiling the Java kernel's driver (RuncellJShell.java) with each. The
 * compiled classes live outside any workspace, owned by the server, and are bound read-only
 * into the sandbox (JavaDriver.readOnlyBinds).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, existsSync, readdirSync, realpathSync } from 'node:fs';
import {
  access,
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
} from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

const SOURCE = fileURLToPath(new URL('./RuncellJShell.java', import.meta.url));
/** The driver's main class, in the classes directory ensureJavaDriver returns. */
export const DRIVER_CLASS = 'RuncellJShell';

export interface Jdk {
  /** The JDK's real directory (symlinked aliases resolved). */
  home: string;
  /** JAVA_VERSION of its release file, e.g. "17.0.15". */
  version: string;
}

/** The `KEY="value"` lines of a JDK's release file. */
async function readRelease(home: string): Promise<Map<string, string> | undefined> {
  let text: string;
  try {
    text = await readFile(join(home, 'release'), 'utf8');
  } catch {
    return undefined;
  }
  const release = new Map<string, string>();
  for (const match of text.matchAll(/^([A-Z_]+)="?(.*?)"?$/gm)) release.set(match[1]!, match[2]!);
  return release;
}

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/** Orders "25.0.3" after "17.0.15" (numerically, part by part). */
function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+_-]/).map((p) => Number.parseInt(p, 10) || 0);
  const pb = b.split(/[.+_-]/).map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The JDKs under `root` that can run the kernel: bin/java, bin/javac, and jdk.jshell among the
 * modules of their runtime image (the release file's MODULES lists what lib/modules holds; a
 * jmods directory alone cannot run anything). Newest first; aliases such as
 * java-1.17.0-openjdk-amd64 → java-17-openjdk-amd64 appear once.
 */
export async function findJdks(root = '/usr/lib/jvm'): Promise<Jdk[]> {
  let entries: string[];
  try {
    entries = (await readdir(root)).sort();
  } catch {
    return [];
  }
  const seen = new Set<string>();
  const jdks: Jdk[] = [];
  for (const entry of entries) {
    let home: string;
    try {
      home = await realpath(join(root, entry));
    } catch {
      continue; // a dangling link
    }
    if (seen.has(home)) continue;
    seen.add(home);
    const release = await readRelease(home);
    const version = release?.get('JAVA_VERSION');
    const modules = release?.get('MODULES')?.split(/\s+/) ?? [];
    if (!version || !modules.includes('jdk.jshell')) continue;
    const usable =
      (await isExecutable(join(home, 'bin', 'java'))) &&
      (await isExecutable(join(home, 'bin', 'javac'))) &&
      (await stat(join(home, 'lib', 'modules')).then(
        (s) => s.isFile(),
        () => false,
      ));
    if (usable) jdks.push({ home, version });
  }
  return jdks.sort((a, b) => compareVersions(b.version, a.version));
}

/**
 * Files a JDK reaches through symlinks that leave /usr, which the sandbox shows on its own:
 * Debian's OpenJDK keeps its configuration in /etc/java-<n>-openjdk (jvm.cfg, java.security,
 * logging.properties) and links it from conf/ and lib/. Exactly those targets, not their
 * directories: nothing else of /etc becomes visible.
 */
export function jdkExternalFiles(home: string): string[] {
  const targets = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isSymbolicLink() && existsSync(path)) {
        const target = realpathSync(path);
        if (!target.startsWith('/usr/')) targets.add(target);
      }
    }
  };
  walk(realpathSync(home));
  return [...targets].sort();
}

/**
 * Throws unless every directory from `dir` up to / lets other users through: the sandbox
 * binds the classes as a pool uid, which must reach them.
 */
async function assertReachable(dir: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    if (((await stat(d)).mode & 0o001) === 0) {
      throw new Error(
        `Java driver directory ${dir} is not reachable by the sandbox uids: ${d} is not searchable by others (chmod o+x, or choose another directory)`,
      );
    }
    if (d === dirname(d)) return;
  }
}

/**
 * Compiles the driver with the JDK's own javac into `outDir/<java version>-<source hash>`
 * unless that is there already (an edited driver gets a new directory), and returns that
 * directory. Directories are 0755 and files 0644, owned by the server: kernels read them, never
 * write them. Concurrent calls are safe: each compiles into a temporary directory renamed into
 * place.
 */
export async function ensureJavaDriver(javaHome: string, outDir: string): Promise<string> {
  outDir = resolve(outDir);
  const home = await realpath(javaHome);
  const version = (await readRelease(home))?.get('JAVA_VERSION');
  if (!version) throw new Error(`${javaHome} is not a JDK: it has no release file with JAVA_VERSION`);
  const source = await readFile(SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const classes = join(outDir, `${version}-${hash}`);
  // Created directories get 0755 whatever the umask: the pool uids must pass through them.
  const created = await mkdir(outDir, { recursive: true });
  if (created) {
    for (let d = outDir; d.length >= created.length; d = dirname(d)) await chmod(d, 0o755);
  }
  if (process.getuid?.() === 0) await assertReachable(outDir);
  if (await isReadable(join(classes, `${DRIVER_CLASS}.class`))) return classes;

  const staging = await mkdtemp(join(outDir, '.build-'));
  try {
    await run(join(home, 'bin', 'javac'), ['-encoding', 'UTF-8', '-d', staging, SOURCE], {
      env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
      timeout: 120_000,
    });
    for (const file of await readdir(staging)) await chmod(join(staging, file), 0o644);
    await chmod(staging, 0o755);
    await rename(staging, classes);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    // Another process finished the same build first.
    if (await isReadable(join(classes, `${DRIVER_CLASS}.class`))) return classes;
    const detail = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`compiling the Java driver with ${home} failed${detail ? `: ${detail}` : ''}`, {
      cause: err,
    });
  }
  return classes;
}

async function isReadable(path: string): Promise<boolean> {
  return access(path, constants.R_OK).then(
    () => true,
    () => false,
  );
}
