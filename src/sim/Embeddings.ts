import { makeRng } from "./Random.js"
import type { Rng } from "./Random.js"

/**
 * A seeded model of face embeddings. Each person has one random unit centre in `dimension`
 * dimensions; every capture of that person (an enrollment template, a probe at the gate) is the
 * centre plus Gaussian noise of total length about `noise`, normalised. Two captures of one person
 * then have a cosine similarity near `1 / (1 + noise^2)`, while captures of different people are
 * nearly orthogonal (cosine about 0, spread `1 / sqrt(dimension)`), which is how real face
 * embedding models behave once normalised.
 */
export interface FaceModelOptions {
  readonly seed: string
  readonly dimension: number
  /** Expected length of the noise added to a unit centre; 0.5 gives genuine pairs near 0.8. */
  readonly noise: number
}

export interface FaceModel {
  readonly options: FaceModelOptions
  /** The unit centre of a person; the same seed and person always give the same centre. */
  readonly centre: (person: string) => Float32Array
  /** One capture of a person, drawn from `rng`. */
  readonly capture: (person: string, rng: Rng) => Array<number>
  /** Expected cosine between two captures of one person. */
  readonly expectedGenuine: number
  /** Standard deviation of the cosine between captures of two different people. */
  readonly impostorSpread: number
}

export const normalise = (vector: ArrayLike<number>): Array<number> => {
  let sum = 0
  for (let i = 0; i < vector.length; i++) sum += vector[i]! * vector[i]!
  const norm = Math.sqrt(sum)
  const out = new Array<number>(vector.length)
  for (let i = 0; i < vector.length; i++) out[i] = vector[i]! / norm
  return out
}

export const cosine = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!
    na += a[i]! * a[i]!
    nb += b[i]! * b[i]!
  }
  return dot / Math.sqrt(na * nb)
}

export const makeFaceModel = (options: FaceModelOptions): FaceModel => {
  const centres = new Map<string, Float32Array>()
  const sigma = options.noise / Math.sqrt(options.dimension)

  const centre = (person: string) => {
    let found = centres.get(person)
    if (found === undefined) {
      const rng = makeRng(`${options.seed}:face:${person}`)
      const raw = new Array<number>(options.dimension)
      for (let i = 0; i < options.dimension; i++) raw[i] = rng.normal()
      found = Float32Array.from(normalise(raw))
      centres.set(person, found)
    }
    return found
  }

  const capture = (person: string, rng: Rng) => {
    const c = centre(person)
    const raw = new Array<number>(options.dimension)
    for (let i = 0; i < options.dimension; i++) raw[i] = c[i]! + sigma * rng.normal()
    // Rounded so request bodies stay small; six decimals change no decision.
    return normalise(raw).map((x) => Math.round(x * 1e6) / 1e6)
  }

  return {
    options,
    centre,
    capture,
    expectedGenuine: 1 / (1 + options.noise * options.noise),
    impostorSpread: 1 / Math.sqrt(options.dimension)
  }
}

/**
 * The decision a correct exact 1:N search makes for a probe: the best-scoring enrolled person at
 * or above the threshold, or none. The simulation uses it as the oracle for expected rates.
 */
export const oracleIdentify = (
  probe: ArrayLike<number>,
  gallery: ReadonlyArray<{ readonly person: string; readonly templates: ReadonlyArray<ArrayLike<number>> }>,
  threshold: number
): { readonly person: string; readonly score: number } | undefined => {
  let best: { person: string; score: number } | undefined
  for (const entry of gallery) {
    for (const template of entry.templates) {
      const score = cosine(probe, template)
      if (score >= threshold && (best === undefined || score > best.score)) best = { person: entry.person, score }
    }
  }
  return best
}
