import { Either } from "effect"
import { findModel, type Model } from "./Models.js"

/** Why a vector was refused; `reason` is stable for programs, the message is for people. */
export type VectorProblem =
  | { readonly reason: "unknown-model"; readonly modelId: string }
  | { readonly reason: "empty" }
  | { readonly reason: "wrong-dimension"; readonly expected: number; readonly actual: number }
  | { readonly reason: "not-finite"; readonly index: number }
  | { readonly reason: "zero" }

export const describeProblem = (problem: VectorProblem): string => {
  switch (problem.reason) {
    case "unknown-model":
      return `unknown model ${problem.modelId}`
    case "empty":
      return "the vector is empty"
    case "wrong-dimension":
      return `the model expects ${problem.expected} values, got ${problem.actual}`
    case "not-finite":
      return `value ${problem.index} is not a finite number`
    case "zero":
      return "the vector has no direction (all values are zero)"
  }
}

/**
 * Scales a vector to unit length. The largest magnitude is divided out first, so values near the
 * float limits neither overflow nor underflow while squaring; the result is stored as float32.
 */
export const normalise = (values: ReadonlyArray<number>): Either.Either<Float32Array, VectorProblem> => {
  let scale = 0
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!
    if (!Number.isFinite(v)) return Either.left({ reason: "not-finite", index: i })
    const a = Math.abs(v)
    if (a > scale) scale = a
  }
  if (values.length === 0) return Either.left({ reason: "empty" })
  if (scale === 0) return Either.left({ reason: "zero" })

  let sum = 0
  for (const v of values) sum += (v / scale) * (v / scale)
  const norm = Math.sqrt(sum)
  const out = new Float32Array(values.length)
  for (let i = 0; i < values.length; i++) out[i] = values[i]! / scale / norm
  // A vector whose components all underflow float32 after scaling carries no direction either.
  if (out.every((v) => v === 0)) return Either.left({ reason: "zero" })
  return Either.right(out)
}

/** Checks a vector against its model and normalises it. */
export const validateVector = (
  modelId: string,
  values: ReadonlyArray<number>
): Either.Either<{ readonly model: Model; readonly vector: Float32Array }, VectorProblem> => {
  const model = findModel(modelId)
  if (model === undefined) return Either.left({ reason: "unknown-model", modelId })
  if (values.length === 0) return Either.left({ reason: "empty" })
  if (values.length !== model.dimension) {
    return Either.left({ reason: "wrong-dimension", expected: model.dimension, actual: values.length })
  }
  return Either.map(normalise(values), (vector) => ({ model, vector }))
}

/** Little-endian float32 bytes, the form templates are sealed in. */
export const vectorToBytes = (vector: Float32Array): Buffer => {
  const out = Buffer.alloc(vector.length * 4)
  for (let i = 0; i < vector.length; i++) out.writeFloatLE(vector[i]!, i * 4)
  return out
}

export const bytesToVector = (bytes: Uint8Array): Float32Array => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out = new Float32Array(bytes.byteLength / 4)
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true)
  return out
}
