import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Logger, LogLevel } from "effect"
import * as Crypto from "node:crypto"
import { derivePersonId } from "../../src/domain/Identity.js"
import { eventually } from "../support/Eventually.js"
import { request } from "../support/Http.js"
import {
  addGuest,
  consentRecord,
  createDevice,
  createEvent,
  createVenueAndDevice,
  enroll,
  type TestDevice
} from "../support/Identity.js"
import { storedRows } from "../support/Privacy.js"
import { TestServerLive } from "../support/Server.js"

const logs: Array<string> = []
const CaptureLogs = Layer.merge(
  Logger.add(Logger.map(Logger.jsonLogger, (line) => void logs.push(line))),
  Logger.minimumLogLevel(LogLevel.All)
)

const enrollBody = (overrides: Record<string, unknown> = {}) => ({
  personId: Crypto.randomUUID(),
  consent: consentRecord,
  templates: [{ modelId: "test-4d@1", vector: [0.5, -0.25, 0.125, 1] }],
  ...overrides
})

/** A POST with an Idempotency-Key (a fresh one unless given; `null` sends none). */
const post = (device: TestDevice, path: string, body: unknown, key: string | null = Crypto.randomUUID()) =>
  request("POST", path, { key: device.key, body, headers: key === null ? {} : { "idempotency-key": key } })

const erase = (device: TestDevice, personId: string, key = Crypto.randomUUID()) =>
  request("DELETE", `/v1/people/${personId}`, { key: device.key, headers: { "idempotency-key": key } })

const counts = (personId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ people: number; templates: number; keys: number; tombstones: number }>`
      SELECT (SELECT count(*)::int FROM people WHERE id = ${personId}) AS people,
             (SELECT count(*)::int FROM templates WHERE person_id = ${personId}) AS templates,
             (SELECT count(*)::int FROM person_keys WHERE person_id = ${personId}) AS keys,
             (SELECT count(*)::int FROM tombstones WHERE person_id = ${personId}) AS tombstones
    `.pipe(Effect.map((rows) => rows[0]!))
  )

const gallery = (eventId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ personId: string }>`SELECT person_id AS "personId" FROM event_gallery WHERE event_id = ${eventId}`,
      (rows) => rows.map((r) => r.personId)
    ))

describe("people over HTTP", () => {
  it.layer(TestServerLive().pipe(Layer.provide(CaptureLogs)))((it) => {
    describe("idempotency contract", () => {
      it.effect("enrolls once and replays the first answer for the same key", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const body = enrollBody()
          const key = Crypto.randomUUID()

          const first = yield* post(device, "/v1/people", body, key)
          const again = yield* post(device, "/v1/people", body, key)

          expect(first.status).toBe(201)
          expect(first.headers.get("idempotent-replayed")).toBeNull()
          expect(again.status).toBe(201)
          expect(again.headers.get("idempotent-replayed")).toBe("true")
          expect(again.body).toEqual(first.body)
          expect(yield* counts(body.personId)).toMatchObject({ people: 1, templates: 1 })
        }))

      it.effect("requires a well-formed Idempotency-Key", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const body = enrollBody()

          const missing = yield* post(device, "/v1/people", body, null)
          const tooLong = yield* post(device, "/v1/people", body, "k".repeat(256))
          const spaced = yield* post(device, "/v1/people", body, "two words")
          const eraseMissing = yield* request("DELETE", `/v1/people/${body.personId}`, { key: device.key })

          for (const reply of [missing, tooLong, spaced, eraseMissing]) {
            expect(reply.status).toBe(400)
            expect(reply.headers.get("content-type")).toBe("application/problem+json")
          }
          expect(yield* counts(body.personId)).toEqual({ people: 0, templates: 0, keys: 0, tombstones: 0 })
        }))

      it.effect("refuses the same key with another body (422) and keeps the first outcome", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const key = Crypto.randomUUID()
          const body = enrollBody()
          yield* post(device, "/v1/people", body, key)

          const other = yield* post(device, "/v1/people", enrollBody(), key)
          const replay = yield* post(device, "/v1/people", body, key)

          expect([other.status, other.body.code]).toEqual([422, "IdempotencyKeyReused"])
          expect(replay.headers.get("idempotent-replayed")).toBe("true")
        }))

      it.effect("scopes keys per device: another device's key is its own", () =>
        Effect.gen(function*() {
          const a = yield* createVenueAndDevice
          const b = yield* createDevice(a.venueId, "second gate")
          const key = Crypto.randomUUID()
          const body = enrollBody({ personId: undefined })

          const fromA = yield* post(a, "/v1/people", body, key)
          const fromB = yield* post(b, "/v1/people", body, key)

          expect(fromA.status).toBe(201)
          expect(fromB.status).toBe(201)
          expect(fromB.headers.get("idempotent-replayed")).toBeNull()
          expect(fromA.body.personId).toBe(derivePersonId(a.deviceId, key))
          expect(fromB.body.personId).toBe(derivePersonId(b.deviceId, key))
        }))

      it.effect("enrolls one person from 50 concurrent identical requests", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const key = Crypto.randomUUID()
          const body = enrollBody({ personId: undefined })

          const replies = yield* Effect.all(
            Array.from({ length: 50 }, () => post(device, "/v1/people", body, key)),
            { concurrency: "unbounded" }
          )
          const later = yield* post(device, "/v1/people", body, key)

          const personId = derivePersonId(device.deviceId, key)
          const statuses = replies.map((r) => r.status)
          expect(statuses.every((s) => s === 201 || s === 409)).toBe(true)
          expect(replies.filter((r) => r.status === 201 && r.headers.get("idempotent-replayed") === null)).toHaveLength(
            1
          )
          for (const r of replies.filter((r) => r.status === 409)) expect(r.body.code).toBe("MessageInProgress")
          expect(later.headers.get("idempotent-replayed")).toBe("true")
          expect(later.body.personId).toBe(personId)
          expect(yield* counts(personId)).toEqual({ people: 1, templates: 1, keys: 1, tombstones: 0 })
          const sql = yield* SqlClient.SqlClient
          const venuePeople = yield* sql<{ n: number }>`
            SELECT count(*)::int AS n FROM people WHERE venue_id = ${device.venueId}
          `
          expect(venuePeople[0]!.n).toBe(1)
        }))

      it.effect("answers 409 to a copy while the first is still running, then replays it", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const device = yield* createVenueAndDevice
          const key = Crypto.randomUUID()
          const body = enrollBody()
          // Holding the person's lock from outside keeps the first request inside its handler.
          const locked = yield* Deferred.make<void>()
          const release = yield* Deferred.make<void>()
          const holder = yield* sql.withTransaction(Effect.gen(function*() {
            yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${`gatehouse:person:${body.personId}`}, 0))`
            yield* Deferred.succeed(locked, undefined)
            yield* Deferred.await(release)
          })).pipe(Effect.fork)
          yield* Deferred.await(locked)

          const first = yield* Effect.fork(post(device, "/v1/people", body, key))
          yield* eventually(Effect.map(
            sql`SELECT 1 FROM inbox_messages WHERE key = ${key} AND status = 'claimed'`,
            (rows) => rows.length > 0
          ))
          const copy = yield* post(device, "/v1/people", body, key)
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(holder)
          const firstReply = yield* Fiber.join(first)
          const retried = yield* post(device, "/v1/people", body, key)

          expect([copy.status, copy.body.code]).toEqual([409, "MessageInProgress"])
          expect(firstReply.status).toBe(201)
          expect(retried.status).toBe(201)
          expect(retried.headers.get("idempotent-replayed")).toBe("true")
          expect(retried.body).toEqual(firstReply.body)
        }))

      it.effect("stores and replays a rejection that is the request's fault", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const person = yield* enroll(device)
          const key = Crypto.randomUUID()
          const body = enrollBody({ personId: person.personId })

          const first = yield* post(device, "/v1/people", body, key)
          const again = yield* post(device, "/v1/people", body, key)

          expect([first.status, first.body.code]).toEqual([409, "PersonAlreadyEnrolled"])
          expect(again.status).toBe(409)
          expect(again.headers.get("idempotent-replayed")).toBe("true")
        }))
    })

    describe("validation", () => {
      const vectorCases: ReadonlyArray<readonly [string, string, string]> = [
        ["wrong dimension", "{\"modelId\":\"test-4d@1\",\"vector\":[1,2,3]}", "wrong-dimension"],
        ["empty vector", "{\"modelId\":\"test-4d@1\",\"vector\":[]}", "empty"],
        ["zero vector", "{\"modelId\":\"test-4d@1\",\"vector\":[0,0,0,0]}", "zero"],
        ["overflowing number", "{\"modelId\":\"test-4d@1\",\"vector\":[1e999,0,0,1]}", "not-finite"],
        ["float32 overflow", "{\"modelId\":\"test-4d@1\",\"vector\":[1e39,0,0,1]}", "not-finite"],
        ["unknown model", "{\"modelId\":\"nobody@1\",\"vector\":[1,2,3,4]}", "unknown-model"]
      ]

      it.effect("refuses bad vectors with TemplateInvalid and writes nothing", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const sql = yield* SqlClient.SqlClient

          for (const [name, template, reason] of vectorCases) {
            const personId = Crypto.randomUUID()
            const key = Crypto.randomUUID()
            const raw = `{"personId":"${personId}","consent":${
              JSON.stringify(consentRecord)
            },"templates":[${template}]}`

            const reply = yield* request("POST", "/v1/people", {
              key: device.key,
              raw,
              headers: { "idempotency-key": key }
            })

            expect([name, reply.status, reply.body.code, reply.body.reason]).toEqual([
              name,
              422,
              "TemplateInvalid",
              reason
            ])
            expect(reply.headers.get("content-type")).toBe("application/problem+json")
            expect(yield* counts(personId)).toEqual({ people: 0, templates: 0, keys: 0, tombstones: 0 })
            const stored = yield* sql`SELECT 1 FROM inbox_messages WHERE key = ${key}`
            expect(stored).toHaveLength(0)
          }
        }))

      it.effect("refuses NaN, NUL characters, lone surrogates and oversized bodies as problems", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const send = (raw: string) =>
            request("POST", "/v1/people", { key: device.key, raw, headers: { "idempotency-key": Crypto.randomUUID() } })
          const template = "{\"modelId\":\"test-4d@1\",\"vector\":[1,2,3,4]}"
          const consent = JSON.stringify(consentRecord)

          const nan = yield* send(`{"consent":${consent},"templates":[{"modelId":"test-4d@1","vector":[NaN,1,1,1]}]}`)
          const deep = yield* send(
            `{"consent":${consent},"templates":[${template}],"x":${"[".repeat(10_000)}${"]".repeat(10_000)}}`
          )
          const nul = yield* send(`{"externalRef":"a\\u0000b","consent":${consent},"templates":[${template}]}`)
          const surrogate = yield* send(
            `{"consent":${JSON.stringify({ ...consentRecord, purposes: ["x"] }).replace("\"x\"", "\"\\ud800\"")},` +
              `"templates":[${template}]}`
          )
          const huge = yield* send(
            `{"consent":${consent},"templates":[{"modelId":"test-4d@1","vector":[${
              Array.from({ length: 400_000 }, () => "0.123456789").join(",")
            }]}]}`
          )
          const badId = yield* send(`{"personId":"not-a-uuid","consent":${consent},"templates":[${template}]}`)

          expect([nan.status, nan.body.code]).toEqual([400, "MalformedBody"])
          expect([deep.status, deep.body.code]).toEqual([400, "BodyTooDeep"])
          const endsEarly = yield* send(
            `{"consent":${
              JSON.stringify({ ...consentRecord, expiresAt: "2020-01-01T00:00:00.000Z" })
            },"templates":[${template}]}`
          )
          expect([endsEarly.status, endsEarly.body.code]).toEqual([400, "InvalidRequest"])
          expect(JSON.stringify(endsEarly.body)).toContain("expiresAt")
          expect([nul.status, nul.body.code]).toEqual([400, "InvalidRequest"])
          expect([surrogate.status, surrogate.body.code]).toEqual([400, "InvalidRequest"])
          expect([huge.status, huge.body.code]).toEqual([413, "PayloadTooLarge"])
          expect([badId.status, badId.body.code]).toEqual([400, "InvalidRequest"])
          const sql = yield* SqlClient.SqlClient
          const people = yield* sql<
            { n: number }
          >`SELECT count(*)::int AS n FROM people WHERE venue_id = ${device.venueId}`
          expect(people[0]!.n).toBe(0)
        }))
    })

    describe("people", () => {
      it.effect("shows status, consent and template metadata, never vectors", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const person = yield* enroll(device, { externalRef: "holder-77" })
          const added = yield* post(device, `/v1/people/${person.personId}/templates`, {
            templates: [{ modelId: "test-4d@1", vector: [1, 1, 0, 0] }]
          })

          const read = yield* request("GET", `/v1/people/${person.personId}`, { key: device.key })

          expect(added.status).toBe(201)
          expect(read.status).toBe(200)
          expect(read.body.status).toBe("active")
          expect(read.body.externalRef).toBe("holder-77")
          expect(read.body.consent.noticeVersion).toBe("2024-05")
          expect(read.body.templates.map((t: any) => t.dimension)).toEqual([4, 4])
          expect(read.text).not.toMatch(/vector/i)
        }))

      it.effect("keeps a device of one venue from seeing or touching another venue's person (404)", () =>
        Effect.gen(function*() {
          const a = yield* createVenueAndDevice
          const b = yield* createVenueAndDevice
          const person = yield* enroll(a)

          const read = yield* request("GET", `/v1/people/${person.personId}`, { key: b.key })
          const add = yield* post(b, `/v1/people/${person.personId}/templates`, {
            templates: [{ modelId: "test-4d@1", vector: [1, 0, 0, 0] }]
          })
          const consent = yield* post(b, `/v1/people/${person.personId}/consent`, {
            state: "withdrawn",
            method: "app",
            givenAt: new Date().toISOString()
          })
          const erased = yield* erase(b, person.personId)
          const stillThere = yield* request("GET", `/v1/people/${person.personId}`, { key: a.key })

          for (const reply of [read, add, consent, erased]) {
            expect([reply.status, reply.body.code]).toEqual([404, "PersonNotFound"])
          }
          expect(stillThere.body.status).toBe("active")
          expect(stillThere.body.templates).toHaveLength(1)
        }))

      it.effect("withdrawal and erasure remove a person from the event gallery", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const event = yield* createEvent(device.venueId)
          const stays = yield* enroll(device)
          const withdraws = yield* enroll(device)
          const erased = yield* enroll(device)
          for (const p of [stays, withdraws, erased]) yield* addGuest(event.eventId, p.personId)
          const before = yield* gallery(event.eventId)

          const withdrawal = yield* post(device, `/v1/people/${withdraws.personId}/consent`, {
            state: "withdrawn",
            method: "kiosk-button",
            givenAt: new Date().toISOString()
          })
          const erasure = yield* erase(device, erased.personId)
          const after = yield* gallery(event.eventId)

          expect(new Set(before)).toEqual(new Set([stays.personId, withdraws.personId, erased.personId]))
          expect(withdrawal.body.status).toBe("withdrawn")
          expect(erasure.body.status).toBe("erased")
          expect(after).toEqual([stays.personId])
        }))

      it.effect("erases idempotently and refuses a redelivered enrollment without re-creating anything", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const key = Crypto.randomUUID()
          const body = enrollBody({ externalRef: "holder-gone" })
          const enrolled = yield* post(device, "/v1/people", body, key)
          const sql = yield* SqlClient.SqlClient
          const naming = sql`SELECT key FROM inbox_messages WHERE outcome::text LIKE '%holder-gone%'`
          const namedBefore = yield* naming

          const first = yield* erase(device, body.personId)
          const second = yield* erase(device, body.personId)
          const redelivered = yield* post(device, "/v1/people", body, key)
          const underNewKey = yield* post(device, "/v1/people", body)
          const addLate = yield* post(device, `/v1/people/${body.personId}/templates`, { templates: body.templates })
          const read = yield* request("GET", `/v1/people/${body.personId}`, { key: device.key })

          expect(enrolled.status).toBe(201)
          expect(first.status).toBe(200)
          expect(second.body.erasedAt).toBe(first.body.erasedAt)
          for (const reply of [redelivered, underNewKey, addLate, read]) {
            expect([reply.status, reply.body.code]).toEqual([410, "PersonErased"])
          }
          expect(yield* counts(body.personId)).toEqual({ people: 0, templates: 0, keys: 0, tombstones: 1 })
          const leftovers = yield* sql`SELECT 1 FROM people WHERE external_ref = 'holder-gone'`
          expect(leftovers).toHaveLength(0)
          // The stored answer of the enrollment named the person; the erasure removed it.
          expect(namedBefore.map((r) => r.key)).toEqual([key])
          expect(yield* naming).toHaveLength(0)
        }))

      it.effect("describes the people endpoints in the OpenAPI document with request and answer examples", () =>
        Effect.gen(function*() {
          const spec = yield* request("GET", "/openapi.json")
          const schemas = spec.body.components.schemas

          expect(Object.keys(spec.body.paths)).toEqual(
            expect.arrayContaining(["/v1/people", "/v1/people/{personId}", "/v1/people/{personId}/templates"])
          )
          for (const name of ["EnrollRequest", "AddTemplatesRequest", "Person", "Erasure"]) {
            expect(schemas[name]?.examples?.length ?? 0, name).toBeGreaterThan(0)
          }
          const added = spec.body.paths["/v1/people/{personId}/templates"].post.responses["201"]
          expect(added.content["application/json"].schema.examples.length).toBeGreaterThan(0)
          expect(schemas.Person.examples[0]).toMatchObject({
            status: "active",
            retainUntil: "2027-06-01T18:00:05.000Z"
          })
          expect(JSON.stringify(schemas.Person)).not.toContain("vector")
        }))

      it.effect("keeps template vectors out of processed messages, outbox, audit log and logs", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const values = [0.7182818, -0.3141592, 0.5772156, 0.6931471]
          const norm = Math.hypot(...values)
          const stored = Float32Array.from(values, (v) => v / norm)
          const person = yield* enroll(device, { vectors: [values] })
          yield* post(device, `/v1/people/${person.personId}/templates`, {
            templates: [{ modelId: "test-4d@1", vector: values }]
          })
          yield* post(
            device,
            "/v1/people",
            enrollBody({ templates: [{ modelId: "test-4d@1", vector: [...values, 1] }] })
          )
          yield* erase(device, person.personId)

          const dumps = yield* storedRows()
          const haystack = dumps.join("\n") + "\n" + logs.join("\n")
          const needles = [
            ...values.map((v) => String(v).slice(3)),
            ...Array.from(stored, (v) => String(v).slice(3, 9))
          ]

          expect(dumps.length).toBeGreaterThan(0)
          expect(logs.length).toBeGreaterThan(0)
          for (const needle of needles) expect(haystack).not.toContain(needle)
        }))
    })
  })
})
