/**
 * JavaScript, TypeScript and Java formatting in-process with Prettier's standalone build: only
 * the parsers imported here, no configuration files, no plugins loaded by name. Nothing of the
 * user's code ever executes.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Plugin } from 'prettier';
import * as babel from 'prettier/plugins/babel';
import * as estree from 'prettier/plugins/estree';
import * as typescript from 'prettier/plugins/typescript';
import { format } from 'prettier/standalone';
import java from 'prettier-plugin-java';
import { Language, Parser, type Node } from 'web-tree-sitter';
import type { FormatResult } from './python-formatter.ts';

const PARSERS = {
  javascript: { parser: 'babel', plugins: [babel, estree as Plugin] },
  typescript: { parser: 'typescript', plugins: [typescript, estree as Plugin] },
  java: { parser: 'java', plugins: [java as Plugin] },
};

export type PrettierLanguage = keyof typeof PARSERS;

export async function formatWithPrettier(language: PrettierLanguage, code: string): Promise<FormatResult> {
  try {
    return { ok: true, formatted: await format(code, PARSERS[language]) };
  } catch (err) {
    const where = (err as { loc?: { start?: { line: number; column: number } } }).loc?.start;
    if (where) {
      // Prettier's message repeats the place, then a code frame: keep the first line's words.
      const what = String((err as Error).message)
        .split('\n')[0]!
        .replace(/ \(\d+:\d+\)$/, '');
      return { ok: false, error: `line ${where.line}, column ${where.column}: ${what}` };
    }
    if (language === 'java') {
      const located = await javaSyntaxError(code);
      if (located) return { ok: false, error: located };
    }
    throw err;
  }
}

let javaParser: Promise<Parser> | undefined;

/** The Java plugin's parser (tree-sitter), loaded from the plugin's own grammar. */
function loadJavaParser(): Promise<Parser> {
  return (javaParser ??= (async () => {
    await Parser.init();
    const plugin = createRequire(import.meta.url).resolve('prettier-plugin-java');
    const grammar = await Language.load(join(dirname(plugin), 'tree-sitter-java_orchard.wasm'));
    const parser = new Parser();
    parser.setLanguage(grammar);
    return parser;
  })());
}

/**
 * prettier-plugin-java reports a syntax error without a place: find the first error in the
 * tree-sitter parse the plugin rejected, as `line L, column C: ...`.
 */
async function javaSyntaxError(code: string): Promise<string | undefined> {
  const tree = (await loadJavaParser()).parse(code);
  if (!tree) return undefined;
  try {
    const node = firstError(tree.rootNode);
    if (!node) return undefined;
    const { row, column } = node.startPosition;
    const what = node.isMissing
      ? `missing ${JSON.stringify(node.type)}`
      : `unexpected ${JSON.stringify(node.text.length > 40 ? `${node.text.slice(0, 40)}…` : node.text)}`;
    return `line ${row + 1}, column ${column + 1}: ${what}`;
  } finally {
    tree.delete();
  }
}

function firstError(node: Node): Node | undefined {
  if (node.isError || node.isMissing) return node;
  for (const child of node.children) {
    if (child && (child.hasError || child.isMissing)) {
      const found = firstError(child);
      if (found) return found;
    }
  }
  return undefined;
}
