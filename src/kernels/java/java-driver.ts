import { join } from 'node:path';
import type { KernelDriver } from '../kernel-driver.ts';
import { DRIVER_CLASS, ensureJavaDriver, jdkExternalFiles } from './build.ts';

const MIB = 1048576;

export class JavaDriver implements KernelDriver {
  readonly language: string;
  readonly #home: string;
  readonly #java: string;
  readonly #driversDir: string;
  #classes: string | undefined;
  #compiled: Promise<void> | undefined;

  /**
   * @param javaHome a JDK (see findJdks), e.g. /usr/lib/jvm/java-17-openjdk-amd64
   * @param driversDir where the compiled driver is kept (see ensureJavaDriver)
   * @param language the kernel's name: `java`, or `java@17` beside a newer default JDK
   */
  constructor(javaHome: string, driversDir: string, language = 'java') {
    this.language = language;
    this.#home = javaHome;
    this.#java = join(javaHome, 'bin', 'java');
    this.#driversDir = driversDir;
  }

  /** Compiles the driver with this JDK on first use (about 2 s; kept for later runs). */
  prepare(): Promise<void> {
    return (this.#compiled ??= ensureJavaDriver(this.#home, this.#driversDir).then(
      (classes) => void (this.#classes = classes),
      (err: unknown) => {
        this.#compiled = undefined;
        throw err;
      },
    ));
  }

  get readOnlyBinds(): readonly string[] {
    return [this.#classesDir(), ...jdkExternalFiles(this.#home)];
  }

  #classesDir(): string {
    if (!this.#classes) throw new Error('JavaDriver.prepare() must finish before a kernel starts');
    return this.#classes;
  }

  argv(limits: { memoryBytes: number }): string[] {
    // The JVM cannot see the cgroup (no /sys in the sandbox), so every memory pool is sized
    // from the limit: the heap gets a bit more than half, the rest covers what the JVM uses
    // besides (classes, compiled code, direct buffers, thread stacks, malloc). Then filling the
    // heap is an OutOfMemoryError in the cell, not a kill by the cgroup: measured at 512 MiB,
    // a kernel whose heap is full peaks at ~355 MiB resident.
    const mb = limits.memoryBytes / MIB;
    const heap = Math.max(16, Math.floor(mb * 0.55));
    const metaspace = Math.max(32, Math.floor(mb * 0.15));
    const direct = Math.max(8, Math.floor(mb * 0.1));
    const codeCache = Math.max(16, Math.min(48, Math.floor(mb * 0.06)));
    return [
      this.#java,
      `-Xmx${heap}m`,
      `-XX:MaxMetaspaceSize=${metaspace}m`,
      `-XX:MaxDirectMemorySize=${direct}m`,
      `-XX:ReservedCodeCacheSize=${codeCache}m`,
      // Fast start and few threads (the pids cgroup counts them): one GC thread (the VM's own),
      // C1 only with one compiler thread, the JDK's class data archive, no perf-data file in /tmp.
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      '-XX:CICompilerCount=1',
      '-Xshare:auto',
      '-XX:-UsePerfData',
      // Nothing may attach to (and run code in) the kernel from outside its cell.
      '-XX:+DisableAttachMechanism',
      '-Djava.awt.headless=true',
      // The sandbox has no passwd entry for its uid: Java would say "?".
      '-Duser.home=/workspace',
      '-Duser.name=runcell',
      // The driver turns fds 3 and 4 into streams (see RuncellJShell.descriptor).
      '--add-opens=java.base/java.io=ALL-UNNAMED',
      '-cp',
      this.#classesDir(),
      DRIVER_CLASS,
    ];
  }
}
