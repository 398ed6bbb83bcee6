import { Either } from "effect"

/**
 * Template vectors: validation, L2 normalisation and the dot product that scores them. Pure
 * functions over `Float32Array`, the one representation that templates have in memory.
 */

/** Why a vector cannot be a template. */
export type VectorProblem =
  | { readonly _tag: "Empty" }
  | { readonly _tag: "WrongDimension"; readonly expected: number; readonly actual: number }
  | { readonly _tag: "NotFinite"; readonly index: number }
  | { readonly _tag: "Zero" }

/** A short sentence for a problem+json `detail`. Never quotes the values themselves. */
export const describeProblem = (problem: VectorProblem): string => {
  switch (problem._tag) {
    case "Empty":
      return "the vector is empty"
    case "WrongDimension":
      return `the vector has ${problem.actual} values, the model expects ${problem.expected}`
    case "NotFinite":
      return `value ${problem.index} is not a finite 32-bit float`
    case "Zero":
      return "the vector is zero: it has no direction to compare"
  }
}

/**
 * Checks a vector as received (JSON numbers) against a model's dimension and returns it as
 * 32-bit floats. A value that is finite as a double but overflows a float (1e39) is refused like
 * NaN; a vector whose values all underflow to zero is refused like a zero vector.
 */
export const validate = (
  values: ArrayLike<number>,
  dimension: number
): Either.Either<Float32Array, VectorProblem> => {
  if (values.length === 0) return Either.left({ _tag: "Empty" })
  if (values.length !== dimension) {
    return Either.left({ _tag: "WrongDimension", expected: dimension, actual: values.length })
  }
  const vector = new Float32Array(dimension)
  let nonZero = false
  for (let i = 0; i < dimension; i++) {
    const value = values[i]
    // `typeof` guards callers that bypass schemas; Float32Array would turn "1" into 1 silently.
    if (typeof value !== "number") return Either.left({ _tag: "NotFinite", index: i })
    const single = Math.fround(value)
    if (!Number.isFinite(single)) return Either.left({ _tag: "NotFinite", index: i })
    vector[i] = single
    if (single !== 0) nonZero = true
  }
  return nonZero ? Either.right(vector) : Either.left({ _tag: "Zero" })
}

/** Sum of squares in double precision: float32 squares of extreme values would overflow. */
export const squaredNorm = (vector: Float32Array): number => {
  let sum = 0
  for (let i = 0; i < vector.length; i++) sum += vector[i] * vector[i]
  return sum
}

/**
 * A new vector of unit L2 length pointing the same way. Computed in double precision, so
 * normalising again changes each value by at most one float32 rounding. A zero vector cannot be
 * normalised; `validate` refuses it before it gets here.
 */
export const normalise = (vector: Float32Array): Float32Array => {
  const norm = Math.sqrt(squaredNorm(vector))
  if (!(norm > 0) || !Number.isFinite(norm)) throw new RangeError("cannot normalise a zero or non-finite vector")
  const out = new Float32Array(vector.length)
  for (let i = 0; i < vector.length; i++) out[i] = vector[i] / norm
  return out
}

/** `validate` then `normalise`: what every template and probe goes through on ingest. */
export const prepare = (
  values: ArrayLike<number>,
  dimension: number
): Either.Either<Float32Array, VectorProblem> => Either.map(validate(values, dimension), normalise)

/**
 * Dot product of `b` with the `dimension` values of `a` that start at `offset`. Four independent
 * accumulators let the CPU overlap the multiply-adds instead of waiting on one running sum; this
 * is the inner loop of every identification.
 */
export const dotAt = (a: Float32Array, offset: number, b: Float32Array, dimension: number): number => {
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  let i = 0
  const end = dimension - (dimension & 3)
  for (; i < end; i += 4) {
    const j = offset + i
    s0 += a[j] * b[i]
    s1 += a[j + 1] * b[i + 1]
    s2 += a[j + 2] * b[i + 2]
    s3 += a[j + 3] * b[i + 3]
  }
  for (; i < dimension; i++) s0 += a[offset + i] * b[i]
  return (s0 + s1) + (s2 + s3)
}

/** Cosine similarity of two normalised vectors of one dimension: their dot product, in [-1, 1]. */
export const cosine = (a: Float32Array, b: Float32Array): number => {
  if (a.length !== b.length) throw new RangeError("vectors of different dimensions cannot be compared")
  return dotAt(a, 0, b, a.length)
}
