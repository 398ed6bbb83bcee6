import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck } from "effect"
import { findModel } from "../../src/domain/Models.js"
import { bytesToVector, prepareTemplate, vectorToBytes } from "../../src/domain/Template.js"

const model = findModel("test-4d@1")!
const finite = FastCheck.double({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true })
const direction = FastCheck.array(finite, { minLength: 4, maxLength: 4 }).filter((v) =>
  v.some((x) => Math.abs(x) > 1e-3)
)

describe("template preparation", () => {
  it.prop("normalises any usable vector to unit length without turning it", [direction], ([values]) => {
    const prepared = prepareTemplate(model.id, values)

    expect(Either.isRight(prepared)).toBe(true)
    const vector = Either.getOrThrow(prepared).vector
    const norm = Math.hypot(...vector)
    const cosine = vector.reduce((s, v, i) => s + v * values[i]!, 0) / Math.hypot(...values)
    expect(Math.abs(norm - 1)).toBeLessThan(1e-6)
    expect(cosine).toBeGreaterThan(1 - 1e-6)
  })

  it.prop("gives the same template for any positive scaling", [
    direction,
    FastCheck.double({ min: 1e-3, max: 1e3, noNaN: true })
  ], ([values, k]) => {
    const a = Either.getOrThrow(prepareTemplate(model.id, values)).vector
    const b = Either.getOrThrow(prepareTemplate(model.id, values.map((v) => v * k))).vector

    a.forEach((v, i) => expect(Math.abs(v - b[i]!)).toBeLessThan(1e-5))
  })

  it.prop(
    "refuses a vector holding NaN or an infinity wherever it is",
    [direction, FastCheck.integer({ min: 0, max: 3 }), FastCheck.constantFrom(NaN, Infinity, -Infinity, 1e39)],
    ([values, index, bad]) => {
      const spoiled = values.map((v, i) => i === index ? bad : v)

      const prepared = prepareTemplate(model.id, spoiled)

      expect(Either.isLeft(prepared) && prepared.left.reason).toBe("not-finite")
    }
  )

  it.prop("refuses any length but the model's", [FastCheck.array(finite, { maxLength: 12 })], ([values]) => {
    const prepared = prepareTemplate(model.id, values)

    if (values.length === 4) return
    expect(Either.isLeft(prepared) && prepared.left.reason).toBe(values.length === 0 ? "empty" : "wrong-dimension")
  })

  it.effect("refuses zero vectors and unknown models", () =>
    Effect.sync(() => {
      expect(Either.flip(prepareTemplate(model.id, [0, 0, -0, 0])).pipe(Either.getOrThrow).reason).toBe("zero")
      expect(Either.flip(prepareTemplate("nope@1", [1, 2, 3, 4])).pipe(Either.getOrThrow).reason).toBe("unknown-model")
    }))

  it.prop("seals vectors to bytes and back exactly", [
    FastCheck.array(FastCheck.float({ noNaN: true }), { maxLength: 64 })
  ], ([values]) => {
    const vector = Float32Array.from(values)

    expect(Array.from(bytesToVector(vectorToBytes(vector)))).toEqual(Array.from(vector))
  })
})
