import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
import { cosine, dotAt, normalise, prepare, squaredNorm, validate } from "../../src/domain/Vector.js"

// Subnormal floats carry a few bits of precision, so scaling them is not exact; they are not faces.
const component = FastCheck.float({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true })
  .map((v) => Math.abs(v) < 1e-20 ? 0 : v)

/** A non-zero float32 vector of 1 to 40 values (so the unrolled loop's remainder is exercised). */
const nonZeroVector = FastCheck.array(component, { minLength: 1, maxLength: 40 })
  .filter((values) => values.some((v) => Math.fround(v) !== 0))
  .map((values) => Float32Array.from(values))

const naiveDot = (a: Float32Array, b: Float32Array) => {
  let sum = 0
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i]
  return sum
}

describe("Vector", () => {
  describe("validate", () => {
    const problem = (values: ReadonlyArray<number>, dimension: number) =>
      Either.match(validate(values, dimension), { onLeft: (p) => p, onRight: () => undefined })

    it("refuses an empty vector, a wrong dimension, NaN, infinities, float overflow, text and zero", () => {
      expect(problem([], 3)).toEqual({ _tag: "Empty" })
      expect(problem([1, 2], 3)).toEqual({ _tag: "WrongDimension", expected: 3, actual: 2 })
      for (const bad of [NaN, Infinity, -Infinity, 1e39, -1e300]) {
        expect(problem([1, bad, 3], 3)).toEqual({ _tag: "NotFinite", index: 1 })
      }
      expect(problem([1, "2" as any], 2)).toEqual({ _tag: "NotFinite", index: 1 })
      expect(problem([0, -0, 0], 3)).toEqual({ _tag: "Zero" })
      expect(problem([1e-50, 0], 2)).toEqual({ _tag: "Zero" })
    })

    it.prop("accepts exactly the vectors of the right length whose float32 values are finite and not all zero", {
      values: FastCheck.array(FastCheck.oneof(FastCheck.double(), FastCheck.constant(0)), { maxLength: 12 }),
      dimension: FastCheck.integer({ min: 1, max: 12 })
    }, ({ dimension, values }) => {
      const singles = values.map(Math.fround)
      const expected = values.length === dimension && singles.every(Number.isFinite) && singles.some((v) => v !== 0)

      const result = validate(values, dimension)

      expect(Either.isRight(result)).toBe(expected)
      if (Either.isRight(result)) expect([...result.right]).toEqual(singles)
    })
  })

  describe("normalise", () => {
    it.prop("gives unit length", [nonZeroVector], ([vector]) => {
      expect(Math.abs(Math.sqrt(squaredNorm(normalise(vector))) - 1)).toBeLessThan(1e-6)
    })

    it.prop("is idempotent up to one float32 rounding", [nonZeroVector], ([vector]) => {
      const once = normalise(vector)
      const twice = normalise(once)

      for (let i = 0; i < once.length; i++) expect(Math.abs(twice[i] - once[i])).toBeLessThanOrEqual(2e-7)
    })

    it.prop("keeps the direction: a positive multiple normalises to the same vector", [
      nonZeroVector,
      FastCheck.double({ min: 1e-3, max: 1e3, noNaN: true })
    ], ([vector, factor]) => {
      const scaled = vector.map((v) => v * factor)
      fcPre(scaled.some((v) => v !== 0) && scaled.every(Number.isFinite))

      expect(cosine(normalise(vector), normalise(scaled))).toBeCloseTo(1, 5)
    })

    it("refuses to normalise a zero vector", () => {
      expect(() => normalise(new Float32Array(4))).toThrow(RangeError)
    })
  })

  describe("scores", () => {
    it.prop("the unrolled dot product equals a plain loop, at any offset", [
      nonZeroVector,
      FastCheck.integer({ min: 0, max: 5 })
    ], ([vector, offset]) => {
      const other = vector.map((v, i) => (i % 3) - v / 2)
      const padded = new Float32Array(offset + vector.length)
      padded.set(vector, offset)

      const expected = naiveDot(vector, other)

      expect(dotAt(padded, offset, other, vector.length)).toBeCloseTo(
        expected,
        Math.max(0, 6 - Math.log10(Math.abs(expected) + 1))
      )
    })

    it.prop(
      "cosine of normalised vectors is in [-1, 1] and 1 with itself",
      [nonZeroVector, nonZeroVector],
      ([a, b]) => {
        fcPre(a.length === b.length)
        const x = normalise(a)
        const y = normalise(b)

        expect(cosine(x, x)).toBeCloseTo(1, 5)
        expect(Math.abs(cosine(x, y))).toBeLessThanOrEqual(1 + 1e-6)
      }
    )

    it("prepare validates then normalises", () => {
      const result = prepare([3, 4], 2)

      expect(Either.isRight(result) && [...result.right]).toEqual([Math.fround(0.6), Math.fround(0.8)])
    })
  })
})

const fcPre = (condition: boolean) => FastCheck.pre(condition)
