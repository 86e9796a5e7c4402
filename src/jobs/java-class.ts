/**
 * javac wants a public class in a file of its name, and java wants the class to run: both are
 * read from the code, so `public class HelloWorld { ... }` runs as sent.
 */

const IDENTIFIER = '[A-Za-z_$][A-Za-z0-9_$]*';
const MODIFIERS = '(?:(?:final|abstract|strictfp|sealed|non-sealed|static)\\s+)*';

/** The code without comments, string, text-block and char literals (a `class` inside one is no class). */
function stripNonCode(code: string): string {
  return code.replace(
    /\/\*[\s\S]*?\*\/|\/\/[^\n]*|"""[\s\S]*?"""|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'/g,
    ' ',
  );
}

export interface JavaEntry {
  /** File name for the code: `<PublicClass>.java`, or `fallback` when no class is public. */
  file: string;
  /** Class to run, with its package: the public class, else the first one with a `main`. */
  main: string;
}

export function javaEntry(code: string, fallback = 'Main.java'): JavaEntry {
  const text = stripNonCode(code);
  const pkg = new RegExp(`^\\s*package\\s+(${IDENTIFIER}(?:\\s*\\.\\s*${IDENTIFIER})*)\\s*;`, 'm')
    .exec(text)?.[1]
    ?.replace(/\s+/g, '');
  const qualify = (name: string) => (pkg ? `${pkg}.${name}` : name);
  const types = new RegExp(`\\b(class|interface|enum|record)\\s+(${IDENTIFIER})`, 'g');
  const publicType = new RegExp(
    `\\bpublic\\s+${MODIFIERS}(?:class|interface|enum|record)\\s+(${IDENTIFIER})`,
  ).exec(text)?.[1];
  if (publicType) return { file: `${publicType}.java`, main: qualify(publicType) };
  // No public class: the file name is free; run the first class that declares a main method.
  const mainAt = /\bstatic\s+void\s+main\s*\(/.exec(text)?.index;
  let main: string | undefined;
  for (const m of text.matchAll(types)) {
    if (mainAt !== undefined && m.index > mainAt) break;
    main = m[2];
  }
  return { file: fallback, main: qualify(main ?? fallback.replace(/\.java$/, '')) };
}
