import { describe, expect, it } from "@effect/vitest"
import { cosine, makeFaceModel, oracleIdentify } from "../../src/sim/Embeddings.js"
import { makeRng } from "../../src/sim/Random.js"

const model = makeFaceModel({ seed: "test", dimension: 512, noise: 0.5 })

describe("seeded face embedding model", () => {
  it("gives the same centre and captures for the same seed", () => {
    const other = makeFaceModel({ seed: "test", dimension: 512, noise: 0.5 })

    expect(Array.from(other.centre("ada"))).toEqual(Array.from(model.centre("ada")))
    expect(other.capture("ada", makeRng("x"))).toEqual(model.capture("ada", makeRng("x")))
    expect(model.capture("ada", makeRng("x"))).not.toEqual(model.capture("ada", makeRng("y")))
  })

  it("produces unit vectors of the model's dimension", () => {
    const v = model.capture("grace", makeRng(1))

    expect(v).toHaveLength(512)
    expect(Math.abs(Math.hypot(...v) - 1)).toBeLessThan(1e-4)
  })

  it("puts genuine pairs far above the threshold and strangers far below it", () => {
    const rng = makeRng("pairs")
    let lowestGenuine = 1
    let highestImpostor = -1

    for (let i = 0; i < 200; i++) {
      const a = model.capture(`p${i}`, rng)
      const b = model.capture(`p${i}`, rng)
      const stranger = model.capture(`s${i}`, rng)
      lowestGenuine = Math.min(lowestGenuine, cosine(a, b))
      highestImpostor = Math.max(highestImpostor, cosine(a, stranger))
    }

    expect(Math.abs(model.expectedGenuine - 0.8)).toBeLessThan(1e-9)
    expect(lowestGenuine).toBeGreaterThan(0.65)
    expect(highestImpostor).toBeLessThan(0.25)
  })

  it("identifies the enrolled person and nobody for a stranger", () => {
    const rng = makeRng("oracle")
    const gallery = Array.from({ length: 50 }, (_, i) => ({
      person: `p${i}`,
      templates: [model.capture(`p${i}`, rng), model.capture(`p${i}`, rng)]
    }))

    expect(oracleIdentify(model.capture("p7", rng), gallery, 0.4)?.person).toBe("p7")
    expect(oracleIdentify(model.capture("nobody", rng), gallery, 0.4)).toBeUndefined()
  })
})
