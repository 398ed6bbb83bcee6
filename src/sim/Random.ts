/**
 * Seeded pseudo-random streams for the simulation. Every device, person and fault draws from its
 * own stream derived from the run's seed and a label, so a run is reproducible from its seed no
 * matter how the fibers interleave.
 */
export interface Rng {
  /** Uniform in [0, 1). */
  readonly next: () => number
  /** Uniform integer in [0, n). */
  readonly int: (n: number) => number
  /** Standard normal (mean 0, variance 1). */
  readonly normal: () => number
  readonly chance: (probability: number) => boolean
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  /** Exponentially distributed with the given mean, for arrivals. */
  readonly exponential: (mean: number) => number
  /** An independent stream named by `label`; the same seed and label always give the same stream. */
  readonly fork: (label: string) => Rng
  /** A random hex string of `bytes` bytes, for ids that must be reproducible. */
  readonly hex: (bytes: number) => string
}

/** 32-bit FNV-1a over the string, then a murmur finaliser: spreads similar labels apart. */
export const hashString = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** sfc32: small, fast, and good enough statistically for a simulation. */
const sfc32 = (a: number, b: number, c: number, d: number) => () => {
  a >>>= 0
  b >>>= 0
  c >>>= 0
  d >>>= 0
  let t = (a + b) | 0
  a = b ^ (b >>> 9)
  b = (c + (c << 3)) | 0
  c = (c << 21) | (c >>> 11)
  d = (d + 1) | 0
  t = (t + d) | 0
  c = (c + t) | 0
  return (t >>> 0) / 4294967296
}

export const makeRng = (seed: string | number): Rng => {
  const key = String(seed)
  const next = sfc32(
    hashString(`${key}/a`),
    hashString(`${key}/b`),
    hashString(`${key}/c`),
    hashString(`${key}/d`)
  )
  // Warm up: the first outputs of sfc32 correlate with the seed words.
  for (let i = 0; i < 12; i++) next()

  let spare: number | undefined
  const normal = () => {
    if (spare !== undefined) {
      const value = spare
      spare = undefined
      return value
    }
    let u = 0
    while (u === 0) u = next()
    const v = next()
    const radius = Math.sqrt(-2 * Math.log(u))
    spare = radius * Math.sin(2 * Math.PI * v)
    return radius * Math.cos(2 * Math.PI * v)
  }

  const int = (n: number) => Math.floor(next() * n)

  return {
    next,
    int,
    normal,
    chance: (probability) => next() < probability,
    pick: (items) => items[int(items.length)]!,
    exponential: (mean) => -Math.log(1 - next()) * mean,
    fork: (label) => makeRng(`${key}:${label}`),
    hex: (bytes) => {
      let out = ""
      for (let i = 0; i < bytes; i++) out += int(256).toString(16).padStart(2, "0")
      return out
    }
  }
}

/** A version-4 UUID drawn from `rng`, so ids are reproducible from the seed. */
export const uuidFrom = (rng: Rng): string => {
  const hex = rng.hex(16).split("")
  hex[12] = "4"
  hex[16] = "89ab"[parseInt(hex[16]!, 16) % 4]!
  const s = hex.join("")
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20, 32)}`
}
