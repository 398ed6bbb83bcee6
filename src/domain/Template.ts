import { Either } from "effect"
import { findModel, type Model } from "./Models.js"
import * as Vector from "./Vector.js"

/** Why a template vector was refused; `reason` is stable for programs, the detail is for people. */
export interface TemplateProblem {
  readonly reason: "unknown-model" | "empty" | "wrong-dimension" | "not-finite" | "zero"
  readonly detail: string
}

const reasons = {
  Empty: "empty",
  WrongDimension: "wrong-dimension",
  NotFinite: "not-finite",
  Zero: "zero"
} as const

/**
 * Checks a template vector against its model and normalises it, exactly as probes are prepared
 * (`Vector.prepare`), so stored templates and probes are comparable.
 */
export const prepareTemplate = (
  modelId: string,
  values: ArrayLike<number>
): Either.Either<{ readonly model: Model; readonly vector: Float32Array }, TemplateProblem> => {
  const model = findModel(modelId)
  if (model === undefined) return Either.left({ reason: "unknown-model", detail: `unknown model ${modelId}` })
  return Either.mapBoth(Vector.prepare(values, model.dimension), {
    onLeft: (problem) => ({ reason: reasons[problem._tag], detail: Vector.describeProblem(problem) }),
    onRight: (vector) => ({ model, vector })
  })
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
