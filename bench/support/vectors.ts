/** Deterministic face-template-like vectors, so a request can be rebuilt from its index alone. */

/** mulberry32: small, fast, seedable. */
export const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/** A normalised vector of `dimension` values for `seed`, rounded to 6 decimals as a device would send. */
export const vector = (seed: number, dimension = 512): Array<number> => {
  const next = random(seed)
  const values = Array.from({ length: dimension }, () => next() * 2 - 1)
  const norm = Math.sqrt(values.reduce((sum, v) => sum + v * v, 0))
  return values.map((v) => Math.round((v / norm) * 1e6) / 1e6)
}

/** `base` with noise of relative size `noise`, normalised: a second look at the same face. */
export const nearby = (base: ReadonlyArray<number>, seed: number, noise = 0.3): Array<number> => {
  const n = vector(seed, base.length)
  const values = base.map((v, i) => v + noise * n[i]!)
  const norm = Math.sqrt(values.reduce((sum, v) => sum + v * v, 0))
  return values.map((v) => Math.round((v / norm) * 1e6) / 1e6)
}
