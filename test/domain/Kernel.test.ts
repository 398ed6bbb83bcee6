import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { Gallery } from "../../src/domain/Gallery.js"
import { laneDot } from "../../src/domain/Kernel.js"
import { dotAt, normalise } from "../../src/domain/Vector.js"

const normalised = (dimension: number) =>
  FastCheck.array(FastCheck.float({ min: -1, max: 1, noNaN: true }), { minLength: dimension, maxLength: dimension })
    .filter((values) => values.some((v) => Math.abs(v) > 1e-3))
    .map((values) => normalise(Float32Array.from(values)))

const pair = FastCheck.constantFrom(16, 64, 512).chain((dimension) =>
  FastCheck.tuple(FastCheck.array(normalised(dimension), { minLength: 1, maxLength: 20 }), normalised(dimension))
)

describe("Kernel", () => {
  it("runs on this platform", () => {
    expect(new Gallery(512).accelerated).toBe(true)
    expect(new Gallery(4).accelerated).toBe(false)
  })

  it.prop(
    "the WebAssembly kernel and its JavaScript twin agree bit for bit, and stay within 1e-5 of double precision",
    [
      pair
    ],
    ([[rows, probe]]) => {
      const gallery = new Gallery(probe.length, 1)
      rows.forEach((vector, i) => gallery.upsert({ templateId: `t${i}`, personId: `p${i}`, vector }))

      const found = gallery.search(probe, rows.length)

      expect(found).toHaveLength(rows.length)
      for (const candidate of found) {
        const vector = rows[Number(candidate.personId.slice(1))]
        expect(candidate.score).toBe(laneDot(vector, 0, probe, probe.length))
        expect(Math.abs(candidate.score - dotAt(vector, 0, probe, probe.length))).toBeLessThan(1e-5)
      }
    },
    { fastCheck: { numRuns: 60 } }
  )
})
