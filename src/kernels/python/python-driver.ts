import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { KernelDriver } from '../kernel-driver.ts';

const SOURCE = readFileSync(new URL('./driver.py', import.meta.url), 'utf8');

/** Compiles the driver with the kernel's own interpreter: a marshalled code object is tied to it. */
const COMPILE =
  'import marshal,sys;sys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.read(),"<runcell-driver>","exec")))';
/** Reads the driver's code object from fd 0 (until end of file) and runs it. */
const BOOTSTRAP =
  'import marshal,os\nb=[]\nwhile c:=os.read(0,1<<16):b.append(c)\nexec(marshal.loads(b"".join(b)))';

const ADDRESS_SPACE_SLACK = 128 * 1048576;

export class PythonDriver implements KernelDriver {
  readonly language = 'python' as const;
  readonly #python: string;
  #code: Buffer | undefined;
  #compiled: Promise<void> | undefined;

  constructor(python: string) {
    this.#python = python;
  }

  /**
   * Compiling the driver costs more than starting the interpreter, so it is done once: each
   * kernel gets the code object on stdin, and the sandbox needs no view of the server's files.
   */
  prepare(): Promise<void> {
    return (this.#compiled ??= new Promise<void>((resolve, reject) => {
      const child = execFile(
        this.#python,
        ['-I', '-S', '-c', COMPILE],
        { env: {}, encoding: 'buffer', maxBuffer: 16 << 20, timeout: 30_000 },
        (err, stdout) => {
          if (err) {
            this.#compiled = undefined; // let a later start try again
            reject(err);
          } else {
            this.#code = stdout;
            resolve();
          }
        },
      );
      // An interpreter that exits at once (a wrong path) fails in the callback, not as EPIPE here.
      child.stdin!.on('error', () => {}).end(SOURCE);
    }));
  }

  stdin(): Buffer {
    if (!this.#code) throw new Error('PythonDriver.prepare() must finish before a kernel starts');
    return this.#code;
  }

  argv(limits: { memoryBytes: number }): string[] {
    // -I: ignore PYTHON* variables and the user site directory; -S: no site (see driver.py).
    // The driver caps its own address space at the cgroup limit plus what an idle interpreter
    // maps without using (thread stacks, libraries: ~100 MiB), so an allocation beyond the limit
    // raises MemoryError instead of getting the kernel OOM-killed.
    const addressSpace = limits.memoryBytes + ADDRESS_SPACE_SLACK;
    return [this.#python, '-I', '-S', '-c', BOOTSTRAP, String(addressSpace)];
  }
}
