/**
 * Host uids for sandboxed processes, one per live process, so that no two kernels can signal,
 * ptrace or share files with each other. A uid returns to the pool only after its process tree
 * is confirmed dead.
 */
export class UidPool {
  #free: number[];

  constructor(base: number, size: number) {
    this.#free = Array.from({ length: size }, (_, i) => base + size - 1 - i);
  }

  get available(): number {
    return this.#free.length;
  }

  acquire(): number | undefined {
    return this.#free.pop();
  }

  release(uid: number): void {
    this.#free.push(uid);
  }
}
