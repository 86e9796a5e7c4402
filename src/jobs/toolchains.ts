/**
 * The toolchains this machine has for the program recipes, found once at start: a language and
 * version is offered only when its binary is there and answers with its version.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RuncellError } from '../errors.ts';
import { PROGRAM_RECIPES, type ProgramRecipe } from './programs.ts';

const run = promisify(execFile);

export interface Toolchain {
  language: string;
  version: string;
  aliases: readonly string[];
  home: string;
  /** Existing host paths to bind read-only (the recipe's `binds`, filled in). */
  binds: string[];
  recipe: ProgramRecipe;
}

/** Replaces `{name}` in each argument; `{sources}` stands alone and becomes several arguments. */
export function fill(template: readonly string[], values: Record<string, string | string[]>): string[] {
  return template.flatMap((arg) => {
    const list = values[/^\{(\w+)\}$/.exec(arg)?.[1] ?? ''];
    if (Array.isArray(list)) return list;
    return [
      arg.replace(/\{(\w+)\}/g, (whole, name: string) => {
        const value = values[name];
        return typeof value === 'string' ? value : whole;
      }),
    ];
  });
}

function candidateHomes(patterns: readonly string[]): string[] {
  const homes = patterns.flatMap((pattern) => {
    if (!pattern.endsWith('/*')) return [pattern];
    const dir = pattern.slice(0, -2);
    try {
      return readdirSync(dir).map((name) => join(dir, name));
    } catch {
      return [];
    }
  });
  // /usr/lib/jvm has aliases (java-1.17.0-openjdk-amd64 -> java-17-openjdk-amd64): once each.
  const seen = new Set<string>();
  return homes.filter((home) => {
    let real: string;
    try {
      real = realpathSync(home);
    } catch {
      return false;
    }
    if (seen.has(real)) return false;
    seen.add(real);
    return true;
  });
}

async function probe(recipe: ProgramRecipe, home: string): Promise<Toolchain | undefined> {
  const [binary, ...args] = fill(recipe.version.argv, { home });
  if (!binary || !existsSync(binary)) return undefined;
  try {
    const { stdout, stderr } = await run(binary, args, { env: {}, timeout: 20_000 });
    const version = recipe.version.pattern.exec(`${stdout}\n${stderr}`.trim())?.[1];
    if (!version) return undefined;
    const major = version.split('.')[0]!;
    const binds = (recipe.binds ?? []).map((b) => fill([b], { home, major })[0]!).filter(existsSync);
    return { language: recipe.language, version, aliases: recipe.aliases, home, binds, recipe };
  } catch {
    return undefined;
  }
}

const byVersionDescending = (a: Toolchain, b: Toolchain) => {
  const [x, y] = [a.version.split('.').map(Number), b.version.split('.').map(Number)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (y[i] ?? 0) - (x[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
};

/** Every working toolchain, newest version first within a language. */
export async function discoverToolchains(
  recipes: readonly ProgramRecipe[] = PROGRAM_RECIPES,
): Promise<Toolchain[]> {
  const found = await Promise.all(
    recipes.flatMap((recipe) => candidateHomes(recipe.homes).map((home) => probe(recipe, home))),
  );
  const toolchains: Toolchain[] = [];
  for (const t of found) {
    if (t && !toolchains.some((o) => o.language === t.language && o.version === t.version))
      toolchains.push(t);
  }
  return toolchains.sort((a, b) =>
    a.language === b.language ? byVersionDescending(a, b) : a.language.localeCompare(b.language),
  );
}

/**
 * The toolchain a request names: a language or alias, with an optional version prefix given
 * apart or after `@` (`java@17`, `{language: "java", version: "17"}`); the newest when none.
 */
export function resolveToolchain(toolchains: Toolchain[], language: string, version?: string): Toolchain {
  const [name, atVersion] = language.split('@', 2) as [string, string | undefined];
  const wanted = version ?? atVersion;
  const found = toolchains.find(
    (t) =>
      (t.language === name || t.aliases.includes(name)) &&
      (wanted === undefined || t.version === wanted || t.version.startsWith(`${wanted}.`)),
  );
  if (found) return found;
  const available = toolchains.map((t) => `${t.language}@${t.version}`).join(', ') || 'none';
  const asked = wanted === undefined ? name : `${name}@${wanted}`;
  throw new RuncellError(
    'LANGUAGE_UNSUPPORTED',
    `language ${JSON.stringify(asked)} is not available for jobs; available: ${available}`,
  );
}
