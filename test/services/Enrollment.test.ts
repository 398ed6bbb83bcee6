import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Crypto from "node:crypto"
import { AppConfig } from "../../src/layers/Config.js"
import { IdentityLive } from "../../src/layers/Identity.js"
import { Secrets } from "../../src/layers/Secrets.js"
import { type EnrollInput, Enrollment } from "../../src/services/Enrollment.js"
import { Inbox } from "../../src/services/Inbox.js"
import { TemplateVault } from "../../src/services/TemplateVault.js"
import { insertVenueWithEvent, TestDatabaseLive } from "../support/Database.js"

const EnrollmentLive = IdentityLive.pipe(
  Layer.provideMerge(Inbox.layerWith()),
  Layer.provideMerge(TestDatabaseLive),
  Layer.provide(Secrets.layerTest),
  Layer.provide(AppConfig.make({ maxTemplatesPerPerson: 3, consentWithdrawnRetentionHours: 0 }))
)

const consent = {
  purposes: ["venue-admission"],
  noticeVersion: "2024-05",
  jurisdiction: "EU-GDPR",
  method: "kiosk-signature",
  givenAt: new Date("2024-06-01T18:00:00Z")
}

const template = (values = [0.1, 0.2, 0.3, 0.4]) => ({ modelId: "test-4d@1", vector: values })

const input = (overrides: Partial<EnrollInput> = {}): EnrollInput => ({
  personId: Crypto.randomUUID(),
  consent,
  templates: [template()],
  ...overrides
})

/** A venue with one event; `actor` is a device of it. */
const venue = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const { eventId, venueId } = yield* insertVenueWithEvent()
  const deviceId = Crypto.randomUUID()
  yield* sql`INSERT INTO devices (id, venue_id, name) VALUES (${deviceId}, ${venueId}, 'd')`
  return { actor: { venueId, deviceId }, eventId }
})

const inGallery = (eventId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ personId: string }>`SELECT person_id AS "personId" FROM event_gallery WHERE event_id = ${eventId}`,
      (rows) => rows.map((r) => r.personId)
    ))

const traces = (personId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ people: number; templates: number; keys: number; consents: number; guests: number }>`
      SELECT (SELECT count(*)::int FROM people WHERE id = ${personId}) AS people,
             (SELECT count(*)::int FROM templates WHERE person_id = ${personId}) AS templates,
             (SELECT count(*)::int FROM person_keys WHERE person_id = ${personId}) AS keys,
             (SELECT count(*)::int FROM consent_records WHERE person_id = ${personId}) AS consents,
             (SELECT count(*)::int FROM event_guests WHERE person_id = ${personId}) AS guests
    `.pipe(Effect.map((rows) => rows[0]!))
  )

const guest = (eventId: string, personId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`INSERT INTO event_guests (event_id, person_id) VALUES (${eventId}, ${personId})`
  )

describe("Enrollment", () => {
  it.layer(EnrollmentLive)((it) => {
    it.effect("enrolls a person with consent and sealed templates, and shows only metadata", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const { actor } = yield* venue

        const person = yield* enrollment.enroll(actor, input({ externalRef: "holder-1" }))

        expect(person.status).toBe("active")
        expect(person.externalRef).toBe("holder-1")
        expect(person.consent.state).toBe("granted")
        expect(person.consent.purposes).toEqual(["venue-admission"])
        expect(person.templates).toHaveLength(1)
        expect(person.templates[0]!.dimension).toBe(4)
        expect(JSON.stringify(person)).not.toMatch(/vector/)
        expect(person.retainUntil.getTime()).toBeGreaterThan(Date.now() + 1000 * 86_400_000)
      }))

    it.effect("refuses a bad template anywhere in the list and leaves nothing written", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const sql = yield* SqlClient.SqlClient
        const { actor } = yield* venue
        const before = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_log`
        const personId = Crypto.randomUUID()

        const cases = [
          [template(), template([1, 2, 3])],
          [template([0, 0, 0, 0])],
          [template([1, Number.NaN, 0, 0])],
          [template([])],
          [{ modelId: "unknown@1", vector: [1, 2, 3, 4] }]
        ]
        const errors = yield* Effect.forEach(cases, (templates) =>
          Effect.flip(enrollment.enroll(actor, input({ personId, templates }))))

        expect(errors.map((e) =>
          e._tag === "TemplateInvalid" ? [e.index, e.reason] : e._tag
        )).toEqual([
          [1, "wrong-dimension"],
          [0, "zero"],
          [0, "not-finite"],
          [0, "empty"],
          [0, "unknown-model"]
        ])
        expect(yield* traces(personId)).toEqual({ people: 0, templates: 0, keys: 0, consents: 0, guests: 0 })
        const after = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_log`
        expect(after[0]!.n).toBe(before[0]!.n)
      }))

    it.effect("caps the templates of one person", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const { actor } = yield* venue
        const person = yield* enrollment.enroll(actor, input({ templates: [template(), template()] }))

        const one = yield* enrollment.addTemplates(actor, person.personId, [template([4, 3, 2, 1])])
        const over = yield* Effect.flip(enrollment.addTemplates(actor, person.personId, [template()]))
        const tooMany = yield* Effect.flip(
          enrollment.enroll(actor, input({ templates: [1, 2, 3, 4].map(() => template()) }))
        )

        expect(one.templates).toHaveLength(1)
        expect(over._tag).toBe("TemplateLimitReached")
        expect(tooMany._tag).toBe("TemplateLimitReached")
      }))

    it.effect("refuses a second enrollment of an id, and another venue's id without saying whose", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const a = yield* venue
        const b = yield* venue
        const first = input({ externalRef: "r-1" })
        yield* enrollment.enroll(a.actor, first)

        const again = yield* Effect.flip(enrollment.enroll(a.actor, first))
        const elsewhere = yield* Effect.flip(enrollment.enroll(b.actor, first))
        const sameRef = yield* Effect.flip(enrollment.enroll(a.actor, input({ externalRef: "r-1" })))
        const otherVenueRef = yield* enrollment.enroll(b.actor, input({ externalRef: "r-1" }))
        const seenFromB = yield* Effect.flip(enrollment.get(b.actor, first.personId))

        expect(again._tag).toBe("PersonAlreadyEnrolled")
        expect(elsewhere._tag).toBe("PersonIdUnavailable")
        expect(sameRef._tag).toBe("ExternalRefTaken")
        expect(otherVenueRef.externalRef).toBe("r-1")
        expect(seenFromB._tag).toBe("PersonNotFound")
      }))

    it.effect("enrolls one person when many copies race", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const { actor } = yield* venue
        const one = input()

        const outcomes = yield* Effect.all(
          Array.from({ length: 20 }, () => Effect.either(enrollment.enroll(actor, one))),
          { concurrency: "unbounded" }
        )

        expect(outcomes.filter((o) => o._tag === "Right")).toHaveLength(1)
        expect(outcomes.filter((o) => o._tag === "Left").map((o) => (o as any).left._tag)).toEqual(
          Array(19).fill("PersonAlreadyEnrolled")
        )
        expect((yield* traces(one.personId)).templates).toBe(1)
      }))

    it.effect("withdrawal takes a person out of every gallery at once; a new grant brings them back", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const sql = yield* SqlClient.SqlClient
        const { actor, eventId } = yield* venue
        const other = Crypto.randomUUID()
        yield* sql`
          INSERT INTO events (id, venue_id, name, starts_at, ends_at)
          VALUES (${other}, ${actor.venueId}, 'e2', now(), now() + interval '1 day')
        `
        const person = yield* enrollment.enroll(actor, input())
        yield* guest(eventId, person.personId)
        yield* guest(other, person.personId)
        const before = [yield* inGallery(eventId), yield* inGallery(other)]

        const withdrawn = yield* enrollment.recordConsent(actor, person.personId, {
          state: "withdrawn",
          method: "kiosk-button",
          givenAt: new Date()
        })
        const during = [yield* inGallery(eventId), yield* inGallery(other)]
        const refused = yield* Effect.flip(enrollment.addTemplates(actor, person.personId, [template()]))
        const regranted = yield* enrollment.recordConsent(actor, person.personId, { state: "granted", ...consent })
        const after = yield* inGallery(eventId)

        expect(before).toEqual([[person.personId], [person.personId]])
        expect(withdrawn.status).toBe("withdrawn")
        expect(withdrawn.retainUntil.getTime()).toBeLessThanOrEqual(Date.now() + 1000)
        expect(during).toEqual([[], []])
        expect(refused._tag).toBe("ConsentNotActive")
        expect(regranted.consentHistory.map((c) => c.state)).toEqual(["granted", "withdrawn", "granted"])
        expect(after).toEqual([person.personId])
      }))

    it.effect("drops a person whose consent expired from galleries", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const { actor, eventId } = yield* venue
        const person = yield* enrollment.enroll(
          actor,
          input({ consent: { ...consent, expiresAt: new Date(Date.now() - 1000) } })
        )
        yield* guest(eventId, person.personId)

        const read = yield* enrollment.get(actor, person.personId)

        expect(read.status).toBe("expired")
        expect(yield* inGallery(eventId)).toEqual([])
      }))

    it.effect("erases everything but a tombstone, idempotently, and refuses a later enrollment", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const vault = yield* TemplateVault
        const sql = yield* SqlClient.SqlClient
        const { actor, eventId } = yield* venue
        const person = yield* enrollment.enroll(actor, input({ externalRef: "holder-erase" }))
        yield* guest(eventId, person.personId)

        const first = yield* enrollment.erase(actor, person.personId)
        const second = yield* enrollment.erase(actor, person.personId)
        const redelivered = yield* Effect.flip(enrollment.enroll(actor, input({ personId: person.personId })))
        const read = yield* Effect.flip(enrollment.get(actor, person.personId))
        const stone =
          yield* sql`SELECT row_to_json(t)::text AS t FROM tombstones t WHERE person_id = ${person.personId}`

        expect(second.erasedAt).toEqual(first.erasedAt)
        expect(redelivered._tag).toBe("PersonErased")
        expect(read._tag).toBe("PersonErased")
        expect(yield* traces(person.personId)).toEqual({ people: 0, templates: 0, keys: 0, consents: 0, guests: 0 })
        expect(yield* inGallery(eventId)).toEqual([])
        expect(yield* vault.forPeople([person.personId])).toEqual([])
        expect(JSON.stringify(stone)).not.toContain("holder-erase")
      }))

    it.effect("tombstones an id erased before its enrollment arrived", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const a = yield* venue
        const b = yield* venue
        const personId = Crypto.randomUUID()

        yield* enrollment.erase(a.actor, personId)
        const late = yield* Effect.flip(enrollment.enroll(a.actor, input({ personId })))
        const elsewhere = yield* Effect.flip(enrollment.enroll(b.actor, input({ personId })))
        const foreignErase = yield* Effect.flip(enrollment.erase(b.actor, personId))

        expect(late._tag).toBe("PersonErased")
        expect(elsewhere._tag).toBe("PersonIdUnavailable")
        expect(foreignErase._tag).toBe("PersonNotFound")
      }))

    it.effect("retention erases people past their date and keeps the others", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const sql = yield* SqlClient.SqlClient
        const { actor } = yield* venue
        const stale = yield* enrollment.enroll(actor, input())
        const withdrawn = yield* enrollment.enroll(actor, input())
        const fresh = yield* enrollment.enroll(actor, input())
        yield* sql`UPDATE people SET last_interaction_at = now() - interval '1096 days' WHERE id = ${stale.personId}`
        yield* enrollment.recordConsent(actor, withdrawn.personId, {
          state: "withdrawn",
          method: "app",
          givenAt: new Date()
        })

        let erased = 0
        for (let n = yield* enrollment.retentionPass; n > 0; n = yield* enrollment.retentionPass) erased += n
        const reasons = yield* sql<{ personId: string; reason: string }>`
          SELECT person_id AS "personId", reason FROM tombstones
          WHERE person_id IN ${sql.in([stale.personId, withdrawn.personId, fresh.personId])}
        `

        expect(erased).toBeGreaterThanOrEqual(2)
        expect(reasons.map((r) => r.personId).sort()).toEqual([stale.personId, withdrawn.personId].sort())
        expect(new Set(reasons.map((r) => r.reason))).toEqual(new Set(["retention"]))
        expect((yield* enrollment.get(actor, fresh.personId)).status).toBe("active")
      }))

    it.effect("keeps template vectors out of the audit log", () =>
      Effect.gen(function*() {
        const enrollment = yield* Enrollment
        const sql = yield* SqlClient.SqlClient
        const { actor } = yield* venue
        const values = [0.123456, -0.654321, 0.777777, 0.314159]
        const person = yield* enrollment.enroll(actor, input({ templates: [template(values)] }))
        yield* enrollment.addTemplates(actor, person.personId, [template(values)])

        const audit = yield* sql<
          { t: string }
        >`SELECT details::text AS t FROM audit_log WHERE person_id = ${person.personId}`

        expect(audit.length).toBeGreaterThan(0)
        const text = audit.map((a) => a.t).join("\n")
        for (const v of values) expect(text).not.toContain(String(v).slice(2, 7))
      }))
  })
})
