/**
 * JavaScript REPL semantics: V8's REPL mode (Runtime.evaluate with replMode, what the kernel
 * uses) against a source transform run by vm (top-level const/let/class rewritten to var, the
 * cheapest transform there is, so the comparison favours it). Both run interleaved in one
 * process on the same cells; the figure is the per-cell cost ratio.
 *
 * It also measures what a TypeScript cell adds: the esbuild transform the server runs first.
 *
 *   node --import tsx bench/js-repl-mode.ts
 */
import { Session } from 'node:inspector';
import vm from 'node:vm';
import { report } from './fixtures.ts';

const CELLS = ['x += 1', "const name = 'Bob'", 'class A { f() { return 1 } }', 'let y = x * 2; y'];
const ROUNDS = 3000;

const session = new Session();
session.connect();
const evaluate = (expression: string) =>
  new Promise<void>((resolve, reject) =>
    session.post('Runtime.evaluate', { expression, replMode: true, awaitPromise: true }, (err) =>
      err ? reject(err) : resolve(),
    ),
  );

const transform = (code: string) =>
  code
    .replace(/^(\s*)(const|let)\s/gm, '$1var ')
    .replace(/^(\s*)class\s+([A-Za-z_$][\w$]*)/gm, '$1var $2 = class $2');
// Its own context, so its declarations do not meet REPL mode's.
const context = vm.createContext({ x: 0 });
const runTransformed = async (code: string) => {
  await vm.runInContext(transform(code), context);
};

const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p99 = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length * 0.99)]!;

await evaluate('var x = 0');
const repl: number[] = [];
const transformed: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  for (const code of CELLS) {
    let t = performance.now();
    await evaluate(code);
    repl.push(performance.now() - t);
    t = performance.now();
    await runTransformed(code);
    transformed.push(performance.now() - t);
  }
}
const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;
console.log(`cells: ${repl.length} each, interleaved`);
console.log(`V8 REPL mode (inspector): median ${us(median(repl))}, p99 ${us(p99(repl))}`);
console.log(`vm + source transform:    median ${us(median(transformed))}, p99 ${us(p99(transformed))}`);
console.log(`ratio REPL mode / transform (median): ${(median(repl) / median(transformed)).toFixed(2)}`);

// TypeScript cells pay one esbuild transform each on the server before the same evaluation.
const { TypescriptDriver } = await import('../src/kernels/typescript/typescript-driver.ts');
const ts = new TypescriptDriver('/usr/bin/node');
const TS_CELLS = [
  'x += 1',
  "const name: string = 'Bob'",
  'interface P { a: number }\nconst p: P = { a: 1 }',
  'enum E { A }',
];
const stripped: number[] = [];
for (let round = 0; round < 1000; round++) {
  for (const code of TS_CELLS) {
    const t = performance.now();
    await ts.transform(code);
    stripped.push(performance.now() - t);
  }
}
console.log(
  `TypeScript cell, esbuild transform: median ${us(median(stripped))}, p99 ${us(p99(stripped))} (per cell, on top)`,
);
session.disconnect();

const command = ['bench/js-repl-mode.ts', ...process.argv.slice(2)].join(' ');
const figures = (xs: number[]) => `median ${us(median(xs))}, p99 ${us(p99(xs))}`;
report(
  {
    benchmark: `JavaScript cell semantics: V8 REPL mode (inspector Runtime.evaluate, replMode) against vm + a const/let/class → var transform, ${repl.length} cells each, in process (\`${command}\`)`,
    runcell: `REPL mode: ${figures(repl)}`,
    floor: `vm + source transform: ${figures(transformed)}`,
    ratio: `REPL mode ${(median(repl) / median(transformed)).toFixed(2)}× the transform (median)`,
  },
  {
    benchmark: `TypeScript cell: the server's esbuild transform before evaluation, ${stripped.length} cells (\`${command}\`)`,
    runcell: `${figures(stripped)} per cell, on top`,
    ratio: `${(median(stripped) / median(repl)).toFixed(2)}× a REPL-mode evaluation (median)`,
  },
);
