import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { type Candidate, Gallery, type GalleryTemplate, ranksBefore } from "../../src/domain/Gallery.js"
import { normalise } from "../../src/domain/Vector.js"

/**
 * Small integer components make equal vectors, equal scores and scores on the threshold common,
 * so ties and the threshold edge are exercised, not just the easy case.
 */
const vectorOf = (dimension: number) =>
  FastCheck.array(FastCheck.integer({ min: -2, max: 2 }), { minLength: dimension, maxLength: dimension })
    .filter((values) => values.some((v) => v !== 0))
    .map((values) => normalise(Float32Array.from(values)))

// Dimensions that are multiples of 16 run on the WebAssembly kernel, the others on `dotAt`.
const scenario = FastCheck.oneof(FastCheck.integer({ min: 1, max: 9 }), FastCheck.constantFrom(16, 32, 48)).chain((
  dimension
) =>
  FastCheck.record({
    dimension: FastCheck.constant(dimension),
    templates: FastCheck.array(
      FastCheck.record({
        person: FastCheck.integer({ min: 0, max: 12 }),
        vector: vectorOf(dimension)
      }),
      { maxLength: 60 }
    ),
    removals: FastCheck.array(FastCheck.nat(80), { maxLength: 10 }),
    probe: vectorOf(dimension),
    k: FastCheck.integer({ min: 1, max: 8 }),
    threshold: FastCheck.oneof(
      FastCheck.constant(-Infinity),
      FastCheck.double({ min: -1, max: 1, noNaN: true }),
      FastCheck.constantFrom(0, 0.5, Math.fround(1 / 3))
    )
  })
)

const templatesOf = (input: { templates: ReadonlyArray<{ person: number; vector: Float32Array }> }) =>
  input.templates.map((t, i): GalleryTemplate => ({
    templateId: `t${i}`,
    personId: `p${t.person}`,
    vector: t.vector
  }))

/** The specification: score every template, keep each person's best, filter, sort, cut. */
const bruteForce = (
  gallery: Gallery,
  templates: ReadonlyArray<GalleryTemplate>,
  probe: Float32Array,
  k: number,
  threshold: number
): Array<Candidate> => {
  const best = new Map<string, number>()
  for (const t of templates) {
    const score = gallery.scoreOf(t.vector, probe)
    best.set(t.personId, Math.max(best.get(t.personId) ?? -Infinity, score))
  }
  return [...best]
    .map(([personId, score]) => ({ personId, score }))
    .filter((c) => c.score >= threshold)
    .sort((a, b) => ranksBefore(a.score, a.personId, b.score, b.personId) ? -1 : 1)
    .slice(0, k)
}

describe("Gallery", () => {
  it.prop("search equals a brute-force reference after any adds and removals", [scenario], ([input]) => {
    const gallery = new Gallery(input.dimension, 2)
    let live = templatesOf(input)
    for (const t of live) gallery.upsert(t)
    for (const r of input.removals) {
      const id = `t${r}`
      expect(gallery.remove(id)).toBe(live.some((t) => t.templateId === id))
      live = live.filter((t) => t.templateId !== id)
    }

    const found = gallery.search(input.probe, input.k, input.threshold)

    expect(found).toEqual(bruteForce(gallery, live, input.probe, input.k, input.threshold))
    expect(gallery.size).toBe(live.length)
    expect(gallery.people).toBe(new Set(live.map((t) => t.personId)).size)
    expect([...gallery.templateIds()].sort()).toEqual(live.map((t) => t.templateId).sort())
  }, { fastCheck: { numRuns: 300 } })

  it.prop("removing a person removes them from every answer", [scenario, FastCheck.integer({ min: 0, max: 12 })], ([
    input,
    person
  ]) => {
    const gallery = new Gallery(input.dimension)
    for (const t of templatesOf(input)) gallery.upsert(t)

    gallery.removePerson(`p${person}`)

    const everyone = gallery.search(input.probe, 100, -Infinity)
    expect(everyone.some((c) => c.personId === `p${person}`)).toBe(false)
    expect(gallery.bestScore(`p${person}`, input.probe)).toBeUndefined()
    expect(gallery.hasPerson(`p${person}`)).toBe(false)
  })

  it.prop("bestScore is the best of a person's templates", [scenario], ([input]) => {
    const gallery = new Gallery(input.dimension)
    const templates = templatesOf(input)
    for (const t of templates) gallery.upsert(t)

    for (const c of bruteForce(gallery, templates, input.probe, 100, -Infinity)) {
      expect(gallery.bestScore(c.personId, input.probe)).toBe(c.score)
    }
  })

  it("replaces a template re-added under the same id", () => {
    const gallery = new Gallery(2)
    gallery.upsert({ templateId: "a", personId: "p", vector: normalise(Float32Array.of(1, 0)) })

    gallery.upsert({ templateId: "a", personId: "q", vector: normalise(Float32Array.of(0, 1)) })

    expect(gallery.size).toBe(1)
    expect(gallery.search(normalise(Float32Array.of(0, 1)), 3)).toEqual([{ personId: "q", score: 1 }])
  })

  it.each([3, 16])("grows and shrinks its one vector block (dimension %i)", (dimension) => {
    const at = (i: number) => {
      const v = new Float32Array(dimension)
      v[0] = Math.cos(i / 100)
      v[1] = Math.sin(i / 100)
      return normalise(v)
    }
    const gallery = new Gallery(dimension, 1)
    for (let i = 0; i < 300; i++) gallery.upsert({ templateId: `t${i}`, personId: `p${i}`, vector: at(i) })
    const grown = gallery.capacity
    const before = gallery.search(at(150), 3)

    for (let i = 0; i < 290; i++) if (i !== 150) gallery.remove(`t${i}`)

    expect(grown).toBeGreaterThanOrEqual(300)
    expect(before[0].personId).toBe("p150")
    expect(gallery.capacity).toBeLessThan(grown)
    expect(gallery.search(at(299), 1)[0].personId).toBe("p299")
    expect(gallery.search(at(150), 1)).toEqual([before[0]])
  })

  it("refuses vectors of another dimension", () => {
    const gallery = new Gallery(4)

    expect(() => gallery.upsert({ templateId: "a", personId: "p", vector: new Float32Array(3) })).toThrow(
      RangeError
    )
    expect(() => gallery.search(new Float32Array(5), 1)).toThrow(RangeError)
  })
})
