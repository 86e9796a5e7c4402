/**
 * Every language of the program recipes, with its real toolchain in a real sandbox: hello world,
 * a compile error reported as such, a runtime error, stdin, args and the exit code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRequest } from '../../src/jobs/job-plan.ts';
import type { Toolchain } from '../../src/jobs/toolchains.ts';
import type { Job } from '../../src/store/store.ts';
import { startJobs } from './helpers.ts';

let t: Awaited<ReturnType<typeof startJobs>>;
beforeAll(async () => {
  t = await startJobs({ uidBase: 62500, uidCount: 3 });
}, 60_000);
afterAll(() => t?.close());

async function run(request: JobRequest): Promise<Job> {
  const job = await t.jobs.submit(request);
  expect(job.state).toBe('queued');
  const final = await t.jobs.wait(job.id, 120);
  expect(['completed', 'failed', 'cancelled']).toContain(final!.state);
  return final!;
}

interface Case {
  hello: string;
  /** Does not compile (or, for interpreted languages, does not parse). */
  broken: string;
  /** Fails at run time with exit code 3 after printing to stderr. */
  fails: string;
  /** Echoes its first argument and the first line of stdin. */
  echo: string;
}

const CASES: Record<string, Case> = {
  python: {
    hello: 'print("Hello, World!")',
    broken: 'print("unclosed"',
    fails: 'import sys\nprint("bad", file=sys.stderr)\nsys.exit(3)',
    echo: 'import sys\nprint(sys.argv[1], input())',
  },
  javascript: {
    hello: 'console.log("Hello, World!")',
    broken: 'console.log("unclosed"',
    fails: 'console.error("bad"); process.exit(3)',
    echo: 'const line = require("fs").readFileSync(0, "utf8").split("\\n")[0]; console.log(process.argv[2], line)',
  },
  typescript: {
    hello: 'const greeting: string = "Hello, World!";\nconsole.log(greeting)',
    broken: 'const x: number = ;',
    fails: 'const code: number = 3; console.error("bad"); process.exit(code)',
    echo: 'import { readFileSync } from "node:fs";\nconst line: string = readFileSync(0, "utf8").split("\\n")[0];\nconsole.log(process.argv[2], line)',
  },
  java: {
    hello:
      'public class HelloWorld { public static void main(String[] args) { System.out.println("Hello, World!"); } }',
    broken: 'public class Broken { public static void main(String[] args) { int x = "no"; } }',
    fails:
      'class Main { public static void main(String[] a) { System.err.println("bad"); System.exit(3); } }',
    echo: 'import java.util.Scanner;\npublic class Echo { public static void main(String[] a) { System.out.println(a[0] + " " + new Scanner(System.in).nextLine()); } }',
  },
  c: {
    hello: '#include <stdio.h>\nint main(void) { puts("Hello, World!"); return 0; }',
    broken: 'int main(void) { return undeclared; }',
    fails: '#include <stdio.h>\nint main(void) { fputs("bad\\n", stderr); return 3; }',
    echo: '#include <stdio.h>\nint main(int c, char **v) { char l[64]; fgets(l, 64, stdin); printf("%s %s", v[1], l); }',
  },
  cpp: {
    hello: '#include <iostream>\nint main() { std::cout << "Hello, World!" << std::endl; }',
    broken: 'int main() { std::string s; }',
    fails: '#include <iostream>\nint main() { std::cerr << "bad\\n"; return 3; }',
    echo: '#include <iostream>\n#include <string>\nint main(int c, char **v) { std::string l; std::getline(std::cin, l); std::cout << v[1] << " " << l << "\\n"; }',
  },
  rust: {
    hello: 'fn main() { println!("Hello, World!"); }',
    broken: 'fn main() { let x: i32 = "no"; }',
    fails: 'fn main() { eprintln!("bad"); std::process::exit(3); }',
    echo: 'use std::io::BufRead;\nfn main() { let l = std::io::stdin().lock().lines().next().unwrap().unwrap(); println!("{} {}", std::env::args().nth(1).unwrap(), l); }',
  },
  bash: {
    hello: 'echo "Hello, World!"',
    broken: 'if then fi (',
    fails: 'echo bad >&2; exit 3',
    echo: 'read -r line; echo "$1 $line"',
  },
};

const COMPILED = new Set(['typescript', 'java', 'c', 'cpp', 'rust']);
/** TypeScript is compiled on the server (esbuild): it has a compile step only when that fails. */
const COMPILED_IN_SANDBOX = new Set(['java', 'c', 'cpp', 'rust']);

describe('program jobs', () => {
  it('offers every language whose toolchain is installed', () => {
    const languages = new Set(t.jobs.toolchains.map((tc: Toolchain) => tc.language));
    // This machine has them all (see scripts/setup for what to install).
    for (const language of Object.keys(CASES)) expect(languages).toContain(language);
  });

  for (const [language, c] of Object.entries(CASES)) {
    describe(language, () => {
      it('runs hello world', async () => {
        const job = await run({ language, code: c.hello });
        expect(job).toMatchObject({
          state: 'completed',
          exitCode: 0,
          reason: null,
          stdout: 'Hello, World!\n',
        });
        expect(job.language).toBe(language);
        expect(job.wallMs).toBeGreaterThan(0);
        expect(job.cpuMs).toBeGreaterThan(0);
        expect(job.peakMemoryBytes).toBeGreaterThan(0);
        if (COMPILED_IN_SANDBOX.has(language)) expect(job.compile).toMatchObject({ exitCode: 0 });
        else expect(job.compile).toBeNull();
      }, 60_000);

      it('reports a compile error as such, or a syntax error as a failure', async () => {
        const job = await run({ language, code: c.broken });
        expect(job.state).toBe('failed');
        if (COMPILED.has(language)) {
          expect(job.reason).toBe('compile-error');
          expect(job.compile!.exitCode).not.toBe(0);
          expect(job.compile!.stderr + job.compile!.stdout).toMatch(/error/i);
          expect(job.exitCode).toBeNull(); // never ran
        } else {
          expect(job.reason).toBeNull();
          expect(job.exitCode).not.toBe(0);
          expect(job.stderr).not.toBe('');
        }
      }, 60_000);

      it('reports a runtime error with its exit code and stderr', async () => {
        const job = await run({ language, code: c.fails });
        expect(job).toMatchObject({ state: 'failed', exitCode: 3, reason: null, stderr: 'bad\n' });
      }, 60_000);

      it('passes args and stdin', async () => {
        const job = await run({ language, code: c.echo, args: ['first'], stdin: 'a line\nanother\n' });
        expect(job).toMatchObject({ state: 'completed', stdout: 'first a line\n' });
      }, 60_000);
    });
  }

  it('runs Java on the version asked for, each JDK found', async () => {
    const versions = t.jobs.toolchains.filter((tc) => tc.language === 'java').map((tc) => tc.version);
    expect(versions.some((v) => v.startsWith('17.'))).toBe(true);
    for (const version of versions) {
      const major = version.split('.')[0]!;
      const code =
        'public class V { public static void main(String[] a) { System.out.println(Runtime.version().feature()); } }';
      const byField = await run({ language: 'java', version: major, code });
      expect(byField).toMatchObject({ state: 'completed', stdout: `${major}\n`, version });
      const byName = await run({ language: `java@${major}`, code });
      expect(byName.version).toBe(version);
    }
  }, 120_000);

  it('finds a Java program in a package, and a multi-file program with an entry', async () => {
    const pkg = await run({
      language: 'java',
      code: '// public class NotThis\npackage demo.app;\npublic class App { public static void main(String[] a) { System.out.println(App.class.getName()); } }',
    });
    expect(pkg).toMatchObject({ state: 'completed', stdout: 'demo.app.App\n' });
    const multi = await run({
      language: 'python',
      files: [
        { name: 'lib/util.py', content: 'def twice(x):\n    return 2 * x\n' },
        {
          name: 'main.py',
          content:
            'import sys\nsys.path.insert(0, "lib")\nimport util\nprint(util.twice(21), open("data.bin","rb").read())',
        },
        { name: 'data.bin', content: Buffer.from([1, 2]).toString('base64'), encoding: 'base64' },
      ],
      entry: 'main.py',
    });
    expect(multi).toMatchObject({ state: 'completed', stdout: "42 b'\\x01\\x02'\n" });
  }, 60_000);

  it('rejects what it cannot run, with a clear message', async () => {
    await expect(t.jobs.submit({ language: 'cobol', code: 'x' })).rejects.toThrow(/not available.*python@/);
    await expect(t.jobs.submit({ language: 'java@8', code: 'x' })).rejects.toThrow(/java@8.*not available/);
    await expect(t.jobs.submit({ language: 'python' })).rejects.toThrow(/code or files/);
    await expect(t.jobs.submit({ language: 'python', code: 'x', command: 'ls' })).rejects.toThrow(
      /command job/,
    );
    await expect(
      t.jobs.submit({ language: 'python', files: [{ name: '../x.py', content: '' }] }),
    ).rejects.toThrow(/relative path/);
    await expect(
      t.jobs.submit({
        language: 'python',
        files: [
          { name: 'a', content: '' },
          { name: 'a/b.py', content: '' },
        ],
      }),
    ).rejects.toThrow(/a is a file and also the directory/);
    await expect(
      t.jobs.submit({ language: 'python', code: 'x', env: { LD_PRELOAD: '/x.so' } }),
    ).rejects.toThrow(/LD_PRELOAD may not be set/);
  });

  it('gives the program the sandbox environment plus its own variables, and nothing of the server', async () => {
    process.env.RUNCELL_TEST_SECRET = 'server-only';
    const job = await run({
      language: 'python',
      code: 'import os, json; print(json.dumps(dict(os.environ)))',
      env: { GREETING: 'hi', LANG: 'C' },
    });
    const env = JSON.parse(job.stdout);
    expect(env).toMatchObject({
      GREETING: 'hi',
      LANG: 'C',
      HOME: '/workspace',
      PATH: '/usr/local/bin:/usr/bin:/bin',
    });
    expect(env.RUNCELL_TEST_SECRET).toBeUndefined();
    delete process.env.RUNCELL_TEST_SECRET;
  });
});
