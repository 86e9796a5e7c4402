/**
 * The seccomp filter bwrap installs (`--seccomp FD`) just before it execs the sandboxed command:
 * the policy in seccomp-policy.ts compiled into classic BPF by a small assembler, with no
 * libseccomp.
 *
 * The program is a straight chain: check the arch (else kill), load the syscall number, then one
 * short block per rule: `if (nr == N) { ...; return action }`. Every jump stays inside its own
 * block, so offsets never grow with the policy and always fit the u8 jump fields.
 */
import { ARCHES, EPERM, RULES, type Action, type Rule } from './seccomp-policy.ts';

// BPF opcodes (linux/bpf_common.h).
const LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS: A = *(u32 *)(seccomp_data + k)
const JEQ = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET = 0x06; // BPF_RET | BPF_K

// struct seccomp_data offsets (little-endian: the low half of each u64 argument comes first).
const NR = 0;
const ARCH = 4;
const argLow = (i: number) => 16 + 8 * i;

// Return values (linux/seccomp.h).
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;

/** The kernel's limit (BPF_MAXINSNS). */
export const MAX_INSTRUCTIONS = 4096;

export interface Instruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

type Target = string | 0; // a label, or 0: the next instruction
type Line = { label: string } | { code: number; k: number; jt?: Target; jf?: Target };

/** Resolves labels into relative jump offsets; a label may only be jumped to forwards. */
function assemble(lines: Line[]): Instruction[] {
  const labels = new Map<string, number>();
  const code: Extract<Line, { code: number }>[] = [];
  for (const line of lines) {
    if ('label' in line) {
      if (labels.has(line.label)) throw new Error(`seccomp: duplicate label ${line.label}`);
      labels.set(line.label, code.length);
    } else code.push(line);
  }
  return code.map((line, pc) => {
    const offset = (target: Target | undefined): number => {
      if (target === undefined || target === 0) return 0;
      const at = labels.get(target);
      if (at === undefined) throw new Error(`seccomp: unknown label ${target}`);
      const off = at - pc - 1;
      if (off < 0 || off > 255) throw new Error(`seccomp: jump to ${target} out of range (${off})`);
      return off;
    };
    return { code: line.code, k: line.k >>> 0, jt: offset(line.jt), jf: offset(line.jf) };
  });
}

function retValue(action: Action): number {
  if (action === 'allow') return RET_ALLOW;
  if (action === 'kill') return RET_KILL_PROCESS;
  return (RET_ERRNO | (action.errno & 0xffff)) >>> 0;
}

const ret = (action: Action): Line => ({ code: RET, k: retValue(action) });

/** The block for one rule, entered with A = nr and falling through to the next rule. */
function ruleBlock(rule: Rule, nr: number, id: number): Line[] {
  const [next, match, allow] = [`next${id}`, `match${id}`, `allow${id}`];
  const head: Line[] = [{ code: JEQ, k: nr, jf: next }];
  const tail: Line[] = [{ label: next }];
  if (!('arg' in rule)) return [...head, ret(rule.action), ...tail];
  head.push({ code: LD_W_ABS, k: argLow(rule.arg) });
  if ('anyBit' in rule) {
    return [
      ...head,
      { code: JSET, k: rule.anyBit, jf: allow },
      ret(rule.action),
      { label: allow },
      ret('allow'),
      ...tail,
    ];
  }
  if ('oneOf' in rule) {
    const tests = rule.oneOf.map((k): Line => ({ code: JEQ, k, jt: match }));
    return [...head, ...tests, ret('allow'), { label: match }, ret(rule.action), ...tail];
  }
  const tests = rule.noneOf.map((k): Line => ({ code: JEQ, k, jt: allow }));
  return [...head, ...tests, ret(rule.action), { label: allow }, ret('allow'), ...tail];
}

/** The filter as instructions, for inspection and tests. */
export function seccompProgram(arch: NodeJS.Architecture = process.arch): Instruction[] {
  const policy = ARCHES[arch];
  if (!policy) {
    throw new Error(
      `seccomp: no syscall table for architecture ${arch} (supported: ${Object.keys(ARCHES).join(', ')})`,
    );
  }
  const seen = new Set<string>();
  const lines: Line[] = [
    { code: LD_W_ABS, k: ARCH },
    { code: JEQ, k: policy.auditArch, jt: 'native' },
    ret('kill'),
    { label: 'native' },
    { code: LD_W_ABS, k: NR },
  ];
  if (policy.x32Bit !== undefined) {
    lines.push({ code: JGE, k: policy.x32Bit, jf: 'native64' }, ret({ errno: EPERM }), { label: 'native64' });
  }
  RULES.forEach((rule, id) => {
    if (seen.has(rule.syscall)) throw new Error(`seccomp: more than one rule for ${rule.syscall}`);
    seen.add(rule.syscall);
    const nr = policy.syscalls[rule.syscall];
    if (nr === undefined) throw new Error(`seccomp: no number for ${rule.syscall} on ${arch}`);
    if (nr !== null) lines.push(...ruleBlock(rule, nr, id));
  });
  lines.push(ret('allow'));
  const program = assemble(lines);
  if (program.length > MAX_INSTRUCTIONS) throw new Error(`seccomp: ${program.length} instructions`);
  return program;
}

/**
 * The filter in the form bwrap reads from `--seccomp FD` (to EOF, before it sets anything up):
 * `struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }[]`, little-endian, no header.
 */
export function seccompFilter(arch: NodeJS.Architecture = process.arch): Buffer {
  const program = seccompProgram(arch);
  const buf = Buffer.alloc(program.length * 8);
  program.forEach((ins, i) => {
    buf.writeUInt16LE(ins.code, i * 8);
    buf.writeUInt8(ins.jt, i * 8 + 2);
    buf.writeUInt8(ins.jf, i * 8 + 3);
    buf.writeUInt32LE(ins.k, i * 8 + 4);
  });
  return buf;
}
