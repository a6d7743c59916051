// What the DHCP and TFTP fuzz inputs share: a seeded generator, so that a failure can be
// replayed, and the edits that apply to any packet.

/** xorshift32: small, fast, deterministic. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/**
 * One random edit of `b`: a bit flipped, a byte set to an edge value, the tail cut, noise
 * appended (up to `maxExtra` bytes, a quarter of them NUL), a slice repeated or a byte
 * dropped. May change `b` in place; returns the result.
 */
export function mutate(b: Buffer, r: () => number, interesting: readonly number[], maxExtra = 64): Buffer {
  const at = b.length ? r() % b.length : 0;
  switch (r() % 6) {
    case 0:
      if (b.length) b[at] = (b[at] as number) ^ (1 << (r() % 8));
      return b;
    case 1:
      if (b.length) b[at] = interesting[r() % interesting.length] as number;
      return b;
    case 2:
      return b.subarray(0, at);
    case 3: {
      const extra = Buffer.alloc(r() % maxExtra);
      for (let i = 0; i < extra.length; i++) extra[i] = r() % 4 === 0 ? 0 : r() & 255;
      return Buffer.concat([b, extra]);
    }
    case 4: {
      const len = r() % 40;
      return Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]);
    }
    default:
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
  }
}
