import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { canonicalJson, fingerprint, fingerprintJson, PayloadNotJson } from "../../src/domain/Fingerprint.js"

/** The same JSON value with every object's keys in another order (decided by `seed`). */
const shuffleKeys = (value: unknown, seed: number): unknown => {
  if (Array.isArray(value)) return value.map((v, i) => shuffleKeys(v, seed + i))
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value)
    const rotated = entries.length === 0 ? entries : [
      ...entries.slice(seed % entries.length),
      ...entries.slice(0, seed % entries.length)
    ].reverse()
    return Object.fromEntries(rotated.map(([k, v]) => [k, shuffleKeys(v, seed + 1)]))
  }
  return value
}

const json = FastCheck.jsonValue({ maxDepth: 4 })

describe("Fingerprint", () => {
  it.prop("key order does not change it", [json, FastCheck.nat()], ([value, seed]) => {
    expect(fingerprint(shuffleKeys(value, seed))).toBe(fingerprint(value))
  })

  it.prop(
    "whitespace does not change it",
    [json, FastCheck.integer({ min: 0, max: 8 })],
    ([value, indent]) => {
      expect(fingerprintJson(JSON.stringify(value, null, indent))).toBe(fingerprint(value))
    }
  )

  it.prop("different payloads differ", [json, json], ([a, b]) => {
    const same = canonicalJson(a) === canonicalJson(b)
    expect(fingerprint(a) === fingerprint(b)).toBe(same)
    if (!same) expect(JSON.stringify(a)).not.toBe(JSON.stringify(b))
  })

  it.prop("a canonical text reads back as the same value", [json], ([value]) => {
    const text = canonicalJson(value)
    expect(canonicalJson(JSON.parse(text))).toBe(text)
  })

  it("spells each number one way", () => {
    const spellings = ["1", "1.0", "1e0", "10e-1", "0.1e1", "1.000000000000000000001"]

    const prints = new Set(spellings.map((n) => fingerprintJson(`{"n":${n}}`)))

    expect(prints.size).toBe(1)
    expect(canonicalJson({ n: -0 })).toBe(`{"n":0}`)
    expect(canonicalJson({ b: [1e21, 1.5e-7], a: "é\u2028" })).toBe(`{"a":"é\u2028","b":[1e+21,1.5e-7]}`)
  })

  it("tells apart values that only look alike", () => {
    expect(fingerprint({ a: 1 })).not.toBe(fingerprint({ a: "1" }))
    expect(fingerprint([1, 2])).not.toBe(fingerprint([2, 1]))
    expect(fingerprint({ a: null })).not.toBe(fingerprint({}))
    expect(fingerprint({ a: undefined })).toBe(fingerprint({}))
  })

  it("refuses what JSON cannot carry", () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic

    for (const bad of [{ n: NaN }, { n: Infinity }, { n: 1n }, new Map(), cyclic, { f: () => 1 }]) {
      expect(() => canonicalJson(bad)).toThrow(PayloadNotJson)
    }
    expect(canonicalJson({ at: new Date(0) })).toBe(`{"at":"1970-01-01T00:00:00.000Z"}`)
  })
})
