/**
 * Host uids for sandboxed processes. All live processes of one owner (a notebook: its Python
 * and JavaScript kernels share a workspace) share one uid; no two owners ever do, so one
 * notebook cannot signal, ptrace or read another's processes and files. A uid returns to the
 * pool only after every process tree of its owner is confirmed dead.
 */
export class UidPool {
  readonly #free: number[];
  readonly #held = new Map<string, { uid: number; count: number }>();

  constructor(base: number, size: number) {
    this.#free = Array.from({ length: size }, (_, i) => base + i);
  }

  /** The owner's uid (taking a free one if it holds none), or undefined when none is free. */
  acquire(owner: string): number | undefined {
    const held = this.#held.get(owner);
    if (held) {
      held.count++;
      return held.uid;
    }
    // The uid released longest ago: a just-freed uid is not handed straight to another notebook.
    const uid = this.#free.shift();
    if (uid !== undefined) this.#held.set(owner, { uid, count: 1 });
    return uid;
  }

  /** Hands `from`'s uid to `to`, which must hold none; false if it does. */
  rename(from: string, to: string): boolean {
    const held = this.#held.get(from);
    if (!held || this.#held.has(to)) return false;
    this.#held.delete(from);
    this.#held.set(to, held);
    return true;
  }

  release(owner: string): void {
    const held = this.#held.get(owner);
    if (!held || --held.count > 0) return;
    this.#held.delete(owner);
    this.#free.push(held.uid);
  }
}
