import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, FastCheck, Fiber, Layer } from "effect"
import { type Candidate, Gallery, ranksBefore } from "../../src/domain/Gallery.js"
import type { Model } from "../../src/domain/Models.js"
import { normalise } from "../../src/domain/Vector.js"
import { AttemptLog, RecordedAttempts } from "../../src/services/AttemptLog.js"
import { GallerySource, GallerySourceMemoryControl, layerMemory } from "../../src/services/GallerySource.js"
import { make } from "../../src/services/Matching.js"

/** Two models of one dimension, to show that a probe meets only its own model's templates. */
const testModels: ReadonlyArray<Model> = [
  { id: "m-a", dimension: 4, threshold: 0.5, description: "" },
  { id: "m-b", dimension: 4, threshold: 0.5, description: "" },
  { id: "m-16", dimension: 16, threshold: 0.3, description: "" }
]
const models = (id: string) => testModels.find((m) => m.id === id)

const venue = "venue-1"
const device = { deviceId: "device-1", venueId: venue }

/** A fresh matching service over the memory source, without background loops. */
const harness = <A, E>(
  body: (
    h: Effect.Effect.Success<typeof setup>
  ) => Effect.Effect<A, E, GallerySource | GallerySourceMemoryControl | AttemptLog | RecordedAttempts>,
  wrap: (layer: typeof memory) => typeof memory = (l) => l
) => Effect.flatMap(setup, body).pipe(Effect.provide(wrap(memory)))

const memory = Layer.merge(layerMemory, AttemptLog.layerMemory)

const setup = Effect.gen(function*() {
  const control = yield* GallerySourceMemoryControl
  const matching = yield* make({ pollInterval: "1 hour", models })
  const recorded = yield* RecordedAttempts
  return { control, matching, recorded }
})

const vec = (...values: Array<number>) => Float32Array.from(values)
const probe = (modelId: string, ...values: Array<number>) => ({ modelId, vector: values })

describe("Matching", () => {
  it.effect("identifies an enrolled guest, records the attempt without the probe, and keeps models apart", () =>
    harness(({ control, matching, recorded }) =>
      Effect.gen(function*() {
        yield* control.addEvent("e1", venue)
        yield* control.addPerson("alice", venue)
        yield* control.addPerson("bob", venue)
        yield* control.addTemplate("alice", { templateId: "a1", modelId: "m-a", vector: normalise(vec(1, 0, 0, 0)) })
        yield* control.addTemplate("bob", { templateId: "b1", modelId: "m-b", vector: normalise(vec(1, 0, 0, 0)) })
        yield* control.addGuest("e1", "alice")
        yield* control.addGuest("e1", "bob")
        yield* matching.sync

        const a = yield* matching.identify(device, { eventId: "e1", probe: probe("m-a", 2, 0.1, 0, 0) })
        const b = yield* matching.identify(device, { eventId: "e1", probe: probe("m-b", 2, 0.1, 0, 0) })

        expect(a.decision).toBe("match")
        expect(a.candidates.map((c) => c.personId)).toEqual(["alice"])
        expect(a.threshold).toBe(0.5)
        expect(b.candidates.map((c) => c.personId)).toEqual(["bob"])
        const attempts = yield* recorded
        expect(attempts).toHaveLength(2)
        expect(attempts[0]).toMatchObject({
          kind: "identification",
          attemptId: a.attemptId,
          eventId: "e1",
          personId: "alice",
          modelId: "m-a",
          decision: "match",
          templatesSearched: 1
        })
        expect(JSON.stringify(attempts)).not.toContain("0.1")
      })
    ))

  it.effect("answers no_match below the threshold and records the best score", () =>
    harness(({ control, matching, recorded }) =>
      Effect.gen(function*() {
        yield* control.addEvent("e1", venue)
        yield* control.addPerson("alice", venue)
        yield* control.addTemplate("alice", { templateId: "a1", modelId: "m-a", vector: normalise(vec(1, 0, 0, 0)) })
        yield* control.addGuest("e1", "alice")
        yield* matching.sync

        const result = yield* matching.identify(device, { eventId: "e1", probe: probe("m-a", 0, 1, 0, 0) })

        expect(result).toMatchObject({ decision: "no_match", candidates: [] })
        expect((yield* recorded)[0]).toMatchObject({ decision: "no_match", bestScore: 0, personId: undefined })
      })
    ))

  it.effect("refuses bad probes precisely and hides events of other venues", () =>
    harness(({ control, matching }) =>
      Effect.gen(function*() {
        yield* control.addEvent("e1", venue)
        yield* control.addEvent("elsewhere", "venue-2")
        yield* matching.sync
        const reason = (p: { modelId: string; vector: Array<number> }) =>
          matching.identify(device, { eventId: "e1", probe: p }).pipe(
            Effect.flip,
            Effect.map((e) => e._tag === "ProbeInvalid" ? e.reason : e._tag)
          )

        expect(yield* reason(probe("nope", 1, 0, 0, 0))).toBe("unknown-model")
        expect(yield* reason(probe("m-a"))).toBe("empty")
        expect(yield* reason(probe("m-a", 1, 0, 0))).toBe("wrong-dimension")
        expect(yield* reason(probe("m-a", 1, NaN, 0, 0))).toBe("not-finite")
        expect(yield* reason(probe("m-a", 0, 0, 0, 0))).toBe("zero")
        for (const eventId of ["elsewhere", "no-such-event"]) {
          const error = yield* Effect.flip(matching.identify(device, { eventId, probe: probe("m-a", 1, 0, 0, 0) }))
          expect(error._tag).toBe("EventNotFound")
        }
      })
    ))

  it.effect("is unavailable until the first load, then serves its last state while the source is down", () =>
    harness(({ control, matching }) =>
      Effect.gen(function*() {
        yield* control.addEvent("e1", venue)
        yield* control.addPerson("alice", venue)
        yield* control.addTemplate("alice", { templateId: "a1", modelId: "m-a", vector: normalise(vec(1, 0, 0, 0)) })
        yield* control.addGuest("e1", "alice")
        const request = { eventId: "e1", probe: probe("m-a", 1, 0, 0, 0) }

        const early = yield* Effect.flip(matching.identify(device, request))
        yield* matching.sync
        yield* control.setAvailable(false)
        const failedSync = yield* Effect.either(matching.sync)
        const identified = yield* matching.identify(device, request)
        const verified = yield* matching.verify(device, { personId: "alice", probe: probe("m-a", 1, 0, 0, 0) })

        expect(early._tag).toBe("MatchingUnavailable")
        expect(Either.isLeft(failedSync)).toBe(true)
        expect(identified.candidates.map((c) => c.personId)).toEqual(["alice"])
        expect(verified).toMatchObject({ decision: "match", score: 1 })
      })
    ))

  it.effect("verifies one person of the venue against their templates of the probe's model", () =>
    harness(({ control, matching }) =>
      Effect.gen(function*() {
        yield* control.addPerson("alice", venue)
        yield* control.addPerson("zoe", "venue-2")
        yield* control.addTemplate("alice", { templateId: "a1", modelId: "m-a", vector: normalise(vec(1, 0, 0, 0)) })
        yield* control.addTemplate("alice", { templateId: "a2", modelId: "m-a", vector: normalise(vec(0, 1, 0, 0)) })
        yield* control.addTemplate("zoe", { templateId: "z1", modelId: "m-a", vector: normalise(vec(1, 0, 0, 0)) })
        yield* matching.sync

        const same = yield* matching.verify(device, { personId: "alice", probe: probe("m-a", 0, 3, 0, 0) })
        const otherModel = yield* matching.verify(device, { personId: "alice", probe: probe("m-b", 0, 3, 0, 0) })
        const otherVenue = yield* Effect.flip(
          matching.verify(device, { personId: "zoe", probe: probe("m-a", 1, 0, 0, 0) })
        )
        yield* control.setConsent("alice", false)
        const withdrawn = yield* matching.verify(device, { personId: "alice", probe: probe("m-a", 0, 3, 0, 0) })

        expect(same).toMatchObject({ decision: "match", score: 1, threshold: 0.5 })
        expect(otherModel).toMatchObject({ decision: "no_match", score: null })
        expect(otherVenue._tag).toBe("PersonNotFound")
        expect(withdrawn).toMatchObject({ decision: "no_match", score: null })
      })
    ))

  it.effect("loads an event created after the last poll when it is first asked for", () =>
    harness(({ control, matching }) =>
      Effect.gen(function*() {
        yield* matching.sync
        yield* control.addEvent("late", venue)
        yield* control.addPerson("alice", venue)
        yield* control.addTemplate("alice", { templateId: "a1", modelId: "m-a", vector: normalise(vec(1, 0, 0, 0)) })
        yield* control.addGuest("late", "alice", false)

        const result = yield* matching.identify(device, { eventId: "late", probe: probe("m-a", 1, 0, 0, 0) })

        expect(result.candidates.map((c) => c.personId)).toEqual(["alice"])
      })
    ))

  it.effect("does not put back a person forgotten while a sync was reading the source", () => {
    const gate = Effect.runSync(Deferred.make<void>())
    const reached = Effect.runSync(Deferred.make<void>())
    // A source whose template reads wait at a gate: the sync is caught between reading and applying.
    const gated = Layer.effect(
      GallerySource,
      Effect.map(GallerySource, (source) => ({
        ...source,
        templates: (ids: ReadonlyArray<string>) =>
          Effect.zipRight(
            Effect.zipRight(Deferred.succeed(reached, undefined), Deferred.await(gate)),
            source.templates(ids)
          )
      }))
    )
    return harness(
      ({ control, matching }) =>
        Effect.gen(function*() {
          yield* control.addEvent("e1", venue)
          yield* control.addPerson("alice", venue)
          yield* control.addTemplate("alice", { templateId: "a1", modelId: "m-a", vector: normalise(vec(1, 0, 0, 0)) })
          yield* control.addGuest("e1", "alice")

          const sync = yield* Effect.fork(matching.sync)
          yield* Deferred.await(reached)
          yield* control.setConsent("alice", false, false)
          yield* matching.forget("alice")
          yield* Deferred.succeed(gate, undefined)
          yield* Fiber.join(sync)
          const result = yield* matching.identify(device, { eventId: "e1", probe: probe("m-a", 1, 0, 0, 0) })

          expect(result.candidates).toEqual([])
        }),
      (l) => Layer.provideMerge(gated, l) as typeof memory
    )
  })

  describe("properties", () => {
    const small = FastCheck.array(FastCheck.integer({ min: -2, max: 2 }), { minLength: 4, maxLength: 4 })
      .filter((v) => v.some((x) => x !== 0))
    const wide = FastCheck.array(FastCheck.integer({ min: -2, max: 2 }), { minLength: 16, maxLength: 16 })
      .filter((v) => v.some((x) => x !== 0))
    const template = FastCheck.oneof(
      FastCheck.record({ modelId: FastCheck.constantFrom("m-a", "m-b"), vector: small }),
      FastCheck.record({ modelId: FastCheck.constant("m-16"), vector: wide })
    )
    const person = FastCheck.record({
      templates: FastCheck.array(template, { maxLength: 3 }),
      guest: FastCheck.boolean(),
      active: FastCheck.boolean()
    })
    const change = FastCheck.record({
      person: FastCheck.nat(11),
      how: FastCheck.constantFrom("forget", "announce", "poll"),
      what: FastCheck.constantFrom("withdraw", "erase")
    })
    const world = FastCheck.record({
      people: FastCheck.array(person, { maxLength: 12 }),
      probe: template,
      topK: FastCheck.integer({ min: 1, max: 6 }),
      changes: FastCheck.array(change, { maxLength: 4 })
    })
    type World = typeof world extends FastCheck.Arbitrary<infer T> ? T : never

    /** The specification: score everyone in the gallery with the probe's model, keep the best per person. */
    const reference = (w: World, gone: ReadonlySet<number>): Array<Candidate> => {
      const model = models(w.probe.modelId)!
      const scorer = new Gallery(model.dimension)
      const p = normalise(Float32Array.from(w.probe.vector))
      const best = new Map<string, number>()
      w.people.forEach((person, i) => {
        if (!person.guest || !person.active || gone.has(i)) return
        for (const t of person.templates) {
          if (t.modelId !== model.id) continue
          const score = scorer.scoreOf(normalise(Float32Array.from(t.vector)), p)
          best.set(`p${i}`, Math.max(best.get(`p${i}`) ?? -Infinity, score))
        }
      })
      return [...best].map(([personId, score]) => ({ personId, score }))
        .filter((c) => c.score >= model.threshold)
        .sort((a, b) => ranksBefore(a.score, a.personId, b.score, b.personId) ? -1 : 1)
        .slice(0, w.topK)
    }

    it.effect.prop(
      "identify equals a brute-force reference, and withdrawal or erasure removes a person from every answer",
      [world],
      ([w]) =>
        harness(({ control, matching }) =>
          Effect.gen(function*() {
            yield* control.addEvent("e1", venue)
            for (const [i, p] of w.people.entries()) {
              yield* control.addPerson(`p${i}`, venue)
              for (const [j, t] of p.templates.entries()) {
                yield* control.addTemplate(`p${i}`, {
                  templateId: `p${i}t${j}`,
                  modelId: t.modelId,
                  vector: normalise(Float32Array.from(t.vector))
                }, false)
              }
              if (p.guest) yield* control.addGuest("e1", `p${i}`, false)
              if (!p.active) yield* control.setConsent(`p${i}`, false, false)
            }
            yield* matching.sync
            const ask = matching.identify(device, { eventId: "e1", probe: w.probe, topK: w.topK }).pipe(
              Effect.map((r) => r.candidates)
            )

            expect(yield* ask).toEqual(reference(w, new Set()))

            const gone = new Set<number>()
            for (const c of w.changes) {
              if (c.person >= w.people.length) continue
              const id = `p${c.person}`
              if (c.what === "erase") yield* control.erase(id, false)
              else yield* control.setConsent(id, false, false)
              if (c.how === "forget") yield* matching.forget(id)
              else if (c.how === "announce") yield* matching.apply({ personId: id })
              else yield* matching.sync
              gone.add(c.person)

              const answer = yield* ask
              expect(answer).toEqual(reference(w, gone))
              expect(answer.some((x) => x.personId === id)).toBe(false)
            }
          })
        ),
      { fastCheck: { numRuns: 100 } }
    )
  })

  it.effect("drops the gallery of an event the source no longer lists", () =>
    harness(({ control, matching }) =>
      Effect.gen(function*() {
        yield* control.addEvent("e1", venue)
        yield* matching.sync
        yield* control.removeEvent("e1")
        yield* matching.sync

        const exit = yield* Effect.exit(matching.identify(device, { eventId: "e1", probe: probe("m-a", 1, 0, 0, 0) }))

        expect(Exit.isFailure(exit)).toBe(true)
        expect((yield* matching.stats).events).toBe(0)
      })
    ))
})
