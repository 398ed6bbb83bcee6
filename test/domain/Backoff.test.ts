import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { nominalDelayMs, redeliveryHorizonMs, retryDelayMs } from "../../src/domain/Backoff.js"

const policy = FastCheck.record({
  baseMs: FastCheck.integer({ min: 1, max: 60_000 }),
  maxMs: FastCheck.integer({ min: 1, max: 24 * 3_600_000 })
})
const attempt = FastCheck.integer({ min: 1, max: 1_000 })
const random = FastCheck.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })

describe("Backoff", () => {
  it.prop(
    "keeps every delay between half the nominal delay and the nominal delay, never above the cap",
    [policy, attempt, random],
    ([p, n, r]) => {
      const delay = retryDelayMs(p, n, r)
      const nominal = nominalDelayMs(p, n)

      expect(delay).toBeGreaterThanOrEqual(Math.floor(nominal / 2))
      expect(delay).toBeLessThanOrEqual(Math.ceil(nominal))
      expect(delay).toBeLessThanOrEqual(Math.max(p.maxMs, 1))
      expect(Number.isInteger(delay)).toBe(true)
    }
  )

  it.prop("grows with the attempt until the cap and starts at the base", [policy, attempt], ([p, n]) => {
    expect(nominalDelayMs(p, n + 1)).toBeGreaterThanOrEqual(nominalDelayMs(p, n))
    expect(nominalDelayMs(p, 1)).toBe(Math.min(p.baseMs, p.maxMs))
    expect(nominalDelayMs(p, n)).toBe(Math.min(p.maxMs, p.baseMs * 2 ** Math.min(n - 1, 52)))
  })

  it.prop(
    "spreads rows that fail together: delays for different draws differ by at most half the nominal delay",
    [policy, attempt, random, random],
    ([p, n, r1, r2]) => {
      expect(Math.abs(retryDelayMs(p, n, r1) - retryDelayMs(p, n, r2))).toBeLessThanOrEqual(
        Math.ceil(nominalDelayMs(p, n) / 2)
      )
    }
  )

  it.prop(
    "bounds the redelivery horizon by the sum of the delays any schedule can draw",
    [policy, FastCheck.integer({ min: 1, max: 40 }), FastCheck.array(random, { minLength: 40, maxLength: 40 })],
    ([p, maxAttempts, draws]) => {
      let drawn = 0
      for (let n = 1; n < maxAttempts; n++) drawn += retryDelayMs(p, n, draws[n]!)

      expect(drawn).toBeLessThanOrEqual(redeliveryHorizonMs(p, maxAttempts) + maxAttempts)
      expect(redeliveryHorizonMs(p, maxAttempts)).toBeLessThanOrEqual(p.maxMs * Math.max(0, maxAttempts - 1))
    }
  )
})
