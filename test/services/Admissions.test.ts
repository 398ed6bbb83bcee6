import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc, Layer } from "effect"
import * as Crypto from "node:crypto"
import { type Direction, firstViolation } from "../../src/domain/CheckIn.js"
import type * as AdmissionDirectory from "../../src/services/AdmissionDirectory.js"
import { Admissions, CheckInSink } from "../../src/services/Admissions.js"
import { Audit } from "../../src/services/Audit.js"
import type { TicketProvider } from "../../src/services/TicketProvider.js"
import { emptyDirectory, history, memoryDirectory, probeOf, seedEvent, ticketScan } from "../support/Admission.js"
import { TestDatabaseLive } from "../support/Database.js"

const directory = emptyDirectory()

const TestLive = Admissions.layer.pipe(
  Layer.provide(memoryDirectory(directory)),
  Layer.provide(CheckInSink.layerNone),
  Layer.provideMerge(Audit.layer),
  Layer.provideMerge(TestDatabaseLive)
)

const admissionsOf = (eventId: string) =>
  Effect.flatMap(Admissions, (a) => a.list(eventId, { after: 0, limit: 1000, flaggedOnly: false }))

describe("Admissions", () => {
  it("builds its live directory from services that never reach the ticketing provider", () => {
    // Checked by the compiler: the layer's requirements would have to include the provider client.
    type Needs = Layer.Layer.Context<typeof AdmissionDirectory.layer>
    const providerFree: [TicketProvider] extends [Needs] ? false : true = true

    expect(providerFree).toBe(true)
  })

  it.layer(TestLive)((it) => {
    it.effect("grants the first entry, refuses the second and replays a retried scan", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory)
        const first = ticketScan(event, event.references[0]!)

        const granted = yield* admissions.admit(first)
        const again = yield* admissions.admit(ticketScan(event, event.references[0]!, { gate: "south" }))
        const retried = yield* admissions.admit(first)

        expect(granted.admission.decision).toBe("granted")
        expect(again.admission).toMatchObject({ decision: "denied", reason: "already_admitted" })
        expect(retried.replayed).toBe(true)
        expect(retried.admission).toEqual(granted.admission)
      }))

    it.effect("refuses a nonce reused for another scan and keeps the first outcome", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory)
        const first = ticketScan(event, event.references[0]!)
        yield* admissions.admit(first)

        const reused = yield* Effect.either(admissions.admit({ ...first, direction: "exit" }))

        expect(Either.isLeft(reused) && reused.left._tag).toBe("ScanNonceReused")
        expect((yield* admissionsOf(event.eventId)).admissions).toHaveLength(1)
      }))

    it.effect("lets exactly one of many concurrent scans of one ticket at two gates in", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory)
        // An exit first, so the ticket's presence row exists and only its row lock stands between the scans.
        yield* admissions.admit(ticketScan(event, event.references[0]!, { direction: "exit" }))
        const scans = Array.from({ length: 16 }, (_, i) =>
          ticketScan(event, event.references[0]!, { gate: i % 2 === 0 ? "north" : "south" }))

        const results = yield* Effect.all(
          scans.map((s) =>
            admissions.admit(s)
          ),
          { concurrency: "unbounded" }
        )

        expect(results.filter((r) => r.admission.decision === "granted")).toHaveLength(1)
        expect(results.filter((r) => r.admission.reason === "already_admitted")).toHaveLength(15)
      }))

    it.effect("records one admission for concurrent copies of one scan, all with its outcome", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory)
        const scan = ticketScan(event, event.references[0]!)

        const results = yield* Effect.all(Array.from({ length: 8 }, () => admissions.admit(scan)), {
          concurrency: "unbounded"
        })

        expect(new Set(results.map((r) => r.admission.admissionId)).size).toBe(1)
        expect(results.filter((r) => !r.replayed)).toHaveLength(1)
        expect((yield* admissionsOf(event.eventId)).admissions).toHaveLength(1)
      }))

    it.effect("records an offline double use as a flagged fact pointing at the earlier entry", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory)
        const online = yield* admissions.admit(ticketScan(event, event.references[0]!))

        const late = yield* admissions.admit(ticketScan(event, event.references[0]!, { offline: true, gate: "side" }))
        const page = yield* admissionsOf(event.eventId)

        expect(late.admission).toMatchObject({ decision: "granted", flagged: "already_admitted" })
        expect(page.conflicts).toHaveLength(1)
        expect(page.conflicts[0]).toMatchObject({
          admissionId: late.admission.admissionId,
          reason: "already_admitted",
          earlierAdmissionId: online.admission.admissionId
        })
      }))

    it.effect("allows re-entry after an exit on a list configured for it", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory)
        yield* admissions.configureList(event.eventId, { allowReentry: true })
        const scan = (direction: Direction) => admissions.admit(ticketScan(event, event.references[0]!, { direction }))

        const decisions = [
          yield* scan("entry"),
          yield* scan("entry"),
          yield* scan("exit"),
          yield* scan("entry")
        ].map((r) => r.admission.decision)

        expect(decisions).toEqual(["granted", "denied", "granted", "granted"])
      }))

    it.effect("identifies a probe and admits on the person's valid ticket", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory, 2)
        const personId = Crypto.randomUUID()
        directory.faces.set(7001, personId)
        directory.links.set(personId, [...event.references])
        const cancelled = directory.tickets.get(event.references[0]!)!
        directory.tickets.set(event.references[0]!, { ...cancelled, valid: false })
        const probe = (face: number) => ticketScan(event, "", { target: { _tag: "Probe", probe: probeOf(face) } })

        const known = yield* admissions.admit(probe(7001))
        const stranger = yield* admissions.admit(probe(7002))

        expect(known.admission).toMatchObject({
          decision: "granted",
          personId,
          ticketId: directory.tickets.get(event.references[1]!)!.ticketId,
          score: 0.9,
          modelId: "test-model"
        })
        expect(stranger.admission).toMatchObject({ decision: "denied", reason: "no_match", personId: null })
      }))

    it.effect("gives each refusal its reason", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory)
        const other = seedEvent(directory)
        const holder = Crypto.randomUUID()
        directory.faces.set(7100, holder)
        const reasonOf = (scan: Parameters<typeof ticketScan>[2], base = event) =>
          Effect.map(admissions.admit(ticketScan(base, event.references[0]!, scan)), (r) => r.admission.reason)

        expect(yield* reasonOf({ target: { _tag: "Ticket", reference: "NOPE" } })).toBe("unknown_ticket")
        expect(yield* reasonOf({ target: { _tag: "Ticket", reference: other.references[0]! } })).toBe("not_in_event")
        expect(yield* reasonOf({ target: { _tag: "Probe", probe: probeOf(7100) } })).toBe("no_ticket")
        const unknownEvent = yield* Effect.either(
          admissions.admit(ticketScan({ ...event, eventId: Crypto.randomUUID() }, "x"))
        )
        expect(Either.isLeft(unknownEvent) && unknownEvent.left._tag).toBe("EventNotFound")
      }))

    it.effect("answers another venue's event as not found and records nothing there", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const event = seedEvent(directory)
        const other = seedEvent(directory)

        const foreign = yield* Effect.either(
          admissions.admit(ticketScan({ ...event, venueId: other.venueId }, event.references[0]!))
        )

        expect(Either.isLeft(foreign) && foreign.left._tag).toBe("EventNotFound")
        expect((yield* admissionsOf(event.eventId)).admissions).toHaveLength(0)
      }))

    it.effect("audits each decision with ids, score, threshold and model, never the probe", () =>
      Effect.gen(function*() {
        const admissions = yield* Admissions
        const audit = yield* Audit
        const event = seedEvent(directory)
        const personId = Crypto.randomUUID()
        directory.faces.set(7200, personId)
        directory.links.set(personId, [...event.references])

        const { admission } = yield* admissions.admit(
          ticketScan(event, "", { target: { _tag: "Probe", probe: probeOf(7200) } })
        )
        const records = yield* audit.list({ eventId: event.eventId, action: "admission", limit: 10 })

        expect(records).toHaveLength(1)
        expect(records[0]).toMatchObject({ deviceId: event.deviceId, personId, venueId: event.venueId })
        expect(records[0]!.details).toMatchObject({
          admissionId: admission.admissionId,
          nonce: admission.nonce,
          ticketId: admission.ticketId,
          decision: "granted",
          score: 0.9,
          threshold: 0.5,
          modelId: "test-model"
        })
        expect(JSON.stringify(records)).not.toMatch(/vector|0\.25/)
      }))

    const scanArb = fc.record({
      direction: fc.constantFrom<Direction>("entry", "entry", "exit"),
      offline: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
      copies: fc.integer({ min: 1, max: 3 })
    })
    const schedule = fc.array(scanArb, { minLength: 1, maxLength: 12 }).chain((scans) => {
      const copies = scans.flatMap((s, i) => Array.from({ length: s.copies }, () => i))
      return fc.record({
        scans: fc.constant(scans),
        order: fc.shuffledSubarray(copies, { minLength: copies.length, maxLength: copies.length }),
        allowReentry: fc.boolean()
      })
    })

    it.effect.prop(
      "keeps the list invariant and first outcomes for concurrent, duplicated, reordered scans",
      [schedule],
      ([g]) =>
        Effect.gen(function*() {
          const admissions = yield* Admissions
          const event = seedEvent(directory)
          yield* admissions.configureList(event.eventId, { allowReentry: g.allowReentry })
          const scans = g.scans.map((s) =>
            ticketScan(event, event.references[0]!, { direction: s.direction, offline: s.offline })
          )

          const answers = yield* Effect.all(
            g.order.map((i) => Effect.map(admissions.admit(scans[i]!), (r) => ({ i, outcome: r.admission.outcome }))),
            { concurrency: 4 }
          )
          const page = yield* admissionsOf(event.eventId)

          expect(page.admissions).toHaveLength(scans.length)
          expect(firstViolation({ allowReentry: g.allowReentry }, history(page.admissions))).toBe(-1)
          const stored = new Map(page.admissions.map((a) => [a.nonce, a.outcome]))
          for (const { i, outcome } of answers) expect(outcome).toEqual(stored.get(scans[i]!.nonce))
        }),
      { fastCheck: { numRuns: 25 } }
    )
  })
})
