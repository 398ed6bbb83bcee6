import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Deferred, Effect, FastCheck, Fiber, Layer, Logger, LogLevel } from "effect"
import * as Crypto from "node:crypto"
import { derivePersonId } from "../../src/domain/Identity.js"
import { eventually } from "../support/Eventually.js"
import { request } from "../support/Http.js"
import { addGuest, consentRecord, createEvent, createVenueAndDevice, type TestDevice } from "../support/Identity.js"
import { axis } from "../support/Matching.js"
import { storedRows } from "../support/Privacy.js"
import { TestServerLive } from "../support/Server.js"

const logs: Array<string> = []
const CaptureLogs = Layer.merge(
  Logger.replace(Logger.defaultLogger, Logger.map(Logger.jsonLogger, (line) => void logs.push(line))),
  Logger.minimumLogLevel(LogLevel.All)
)

const maxMessages = 12

interface Item {
  readonly messageId: string
  readonly type: string
  readonly payload: unknown
}

const enrollPayload = (personId: string, vector: ReadonlyArray<number> = [0.5, -0.25, 0.125, 1]) => ({
  personId,
  consent: consentRecord,
  templates: [{ modelId: "test-4d@1", vector }]
})

const enrollItem = (personId: string = Crypto.randomUUID(), messageId: string = Crypto.randomUUID()): Item => ({
  messageId,
  type: "enroll",
  payload: enrollPayload(personId)
})
const addItem = (personId: string, vector: ReadonlyArray<number> = [1, 1, 0, 0]): Item => ({
  messageId: Crypto.randomUUID(),
  type: "addTemplates",
  payload: { personId, templates: [{ modelId: "test-4d@1", vector }] }
})
const withdrawal = { state: "withdrawn", method: "kiosk-button", givenAt: "2024-07-01T10:00:00.000Z" }
const withdrawItem = (personId: string): Item => ({
  messageId: Crypto.randomUUID(),
  type: "consent",
  payload: { personId, ...withdrawal }
})
const eraseItem = (personId: string): Item => ({ messageId: Crypto.randomUUID(), type: "erase", payload: { personId } })

/** Sends a batch; a fresh batch Idempotency-Key unless one is given. */
const upload = (device: TestDevice, messages: ReadonlyArray<Item>, key = Crypto.randomUUID()) =>
  request("POST", "/v1/device-messages", { key: device.key, body: { messages }, headers: { "idempotency-key": key } })

const uploadRaw = (device: TestDevice, raw: string, key = Crypto.randomUUID()) =>
  request("POST", "/v1/device-messages", { key: device.key, raw, headers: { "idempotency-key": key } })

const single = (device: TestDevice, method: string, path: string, key: string, body?: unknown) =>
  request(method, path, {
    key: device.key,
    headers: { "idempotency-key": key },
    ...(body === undefined ? {} : { body })
  })

const statuses = (reply: { body: any }) => reply.body.results.map((r: any) => r.status)

/** Everything a venue's device has written: people, templates, tombstones, audit rows and inbox records. */
const footprint = (device: TestDevice) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ people: number; templates: number; tombstones: number; audit: number; inbox: number }>`
        SELECT (SELECT count(*)::int FROM people WHERE venue_id = ${device.venueId}) AS people,
               (SELECT count(*)::int FROM templates t JOIN people p ON p.id = t.person_id
                 WHERE p.venue_id = ${device.venueId}) AS templates,
               (SELECT count(*)::int FROM tombstones WHERE venue_id = ${device.venueId}) AS tombstones,
               (SELECT count(*)::int FROM audit_log WHERE venue_id = ${device.venueId}) AS audit,
               (SELECT count(*)::int FROM inbox_messages WHERE scope = ${`device:${device.deviceId}`}) AS inbox
      `,
      (rows) => rows[0]!
    ))

const stored = (device: TestDevice, key: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      Effect.map(
        sql`SELECT 1 FROM inbox_messages WHERE scope = ${`device:${device.deviceId}`} AND key = ${key}`,
        (rows) => rows.length
      )
  )

describe("device messages over HTTP", () => {
  // The live clock: concurrent copies of a message wait for its outcome in real time.
  layer(
    TestServerLive({ deviceBatchMaxMessages: maxMessages, inboxWaitMs: 300, matchingPollMs: 50 }).pipe(
      Layer.provide(CaptureLogs)
    ),
    { excludeTestServices: true, timeout: 120_000 }
  )((it) => {
    describe("a batch", () => {
      it.effect("applies each message once and answers one result per message, in order", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const [a, b, c] = [Crypto.randomUUID(), Crypto.randomUUID(), Crypto.randomUUID()]
          const items = [enrollItem(a), enrollItem(b), addItem(a), withdrawItem(b), eraseItem(c)]

          const reply = yield* upload(device, items)

          expect(reply.status).toBe(200)
          expect(reply.headers.get("idempotent-replayed")).toBeNull()
          expect(reply.body.results.map((r: any) => [r.messageId, r.type, r.status, r.replayed, r.retry])).toEqual([
            [items[0]!.messageId, "enroll", 201, false, false],
            [items[1]!.messageId, "enroll", 201, false, false],
            [items[2]!.messageId, "addTemplates", 201, false, false],
            [items[3]!.messageId, "consent", 200, false, false],
            [items[4]!.messageId, "erase", 200, false, false]
          ])
          expect(reply.body.results[0].body.personId).toBe(a)
          expect(reply.body.results[2].body.templates).toHaveLength(1)
          expect(reply.body.results[3].body.status).toBe("withdrawn")
          expect(reply.body.results[4].body).toMatchObject({ personId: c, status: "erased" })
          expect(yield* footprint(device)).toMatchObject({ people: 2, templates: 3, tombstones: 1, inbox: 6 })
        }))

      it.effect("replays every message on a resend, under the same or a new batch key, and creates nothing new", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const a = Crypto.randomUUID()
          const items = [enrollItem(a), addItem(a), eraseItem(Crypto.randomUUID())]
          const key = Crypto.randomUUID()
          const first = yield* upload(device, items, key)
          const before = yield* footprint(device)

          const sameKey = yield* upload(device, items, key)
          const newKey = yield* upload(device, items)

          for (const again of [sameKey, newKey]) {
            expect(again.status).toBe(200)
            expect(again.headers.get("idempotent-replayed")).toBe("true")
            expect(again.body.results.map((r: any) => r.replayed)).toEqual([true, true, true])
            expect(again.body.results.map((r: any) => r.body)).toEqual(first.body.results.map((r: any) => r.body))
          }
          // The new batch key is the only new record.
          expect(yield* footprint(device)).toEqual({ ...before, inbox: before.inbox + 1 })
        }))

      it.effect("is one message with the same request sent alone under the same key, either way round", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const [a, b] = [Crypto.randomUUID(), Crypto.randomUUID()]
          const enrollA = enrollItem(a)
          const enrollB = enrollItem(b)
          const addA = addItem(a)
          const eraseB = eraseItem(b)

          const aloneFirst = yield* single(device, "POST", "/v1/people", enrollA.messageId, enrollA.payload)
          const alsoAlone = yield* single(
            device,
            "POST",
            `/v1/people/${a}/templates`,
            addA.messageId,
            { templates: (addA.payload as any).templates }
          )
          const batch = yield* upload(device, [enrollA, addA, enrollB, eraseB])
          const enrollBAlone = yield* single(device, "POST", "/v1/people", enrollB.messageId, enrollB.payload)
          const eraseBAlone = yield* single(device, "DELETE", `/v1/people/${b}`, eraseB.messageId)

          expect(batch.body.results.map((r: any) => [r.status, r.replayed])).toEqual([
            [201, true],
            [201, true],
            [201, false],
            [200, false]
          ])
          expect(batch.body.results[0].body).toEqual(aloneFirst.body)
          expect(batch.body.results[1].body).toEqual(alsoAlone.body)
          // enrollB was answered 201 and stored; the erasure after it refuses its replay.
          expect([enrollBAlone.status, enrollBAlone.body.code]).toEqual([410, "PersonErased"])
          expect(eraseBAlone.status).toBe(200)
          expect(eraseBAlone.headers.get("idempotent-replayed")).toBe("true")
          expect(eraseBAlone.body).toEqual(batch.body.results[3].body)
          expect(yield* footprint(device)).toMatchObject({ people: 1, templates: 2, tombstones: 1 })
        }))

      it.effect("derives the person id of an enroll message without one from the device and the message id", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const messageId = Crypto.randomUUID()
          const { personId: _, ...payload } = enrollPayload(Crypto.randomUUID())

          const batch = yield* upload(device, [{ messageId, type: "enroll", payload }])
          const alone = yield* single(device, "POST", "/v1/people", messageId, payload)

          expect(batch.body.results[0].body.personId).toBe(derivePersonId(device.deviceId, messageId))
          expect(alone.headers.get("idempotent-replayed")).toBe("true")
          expect(alone.body).toEqual(batch.body.results[0].body)
        }))

      it.effect("answers two copies of a batch sent at once with one first answer per message", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const key = Crypto.randomUUID()
          const items = Array.from({ length: 6 }, () => enrollItem())

          const [a, b] = yield* Effect.all([upload(device, items, key), upload(device, items, key)], {
            concurrency: 2
          })

          expect([a.status, b.status]).toEqual([200, 200])
          for (let i = 0; i < items.length; i++) {
            const pair = [a.body.results[i], b.body.results[i]]
            expect(pair.map((r) => r.status)).toEqual([201, 201])
            expect(pair.filter((r) => !r.replayed)).toHaveLength(1)
            expect(pair[0].body).toEqual(pair[1].body)
          }
          expect(yield* footprint(device)).toMatchObject({ people: items.length, inbox: items.length + 1 })
        }))

      it.effect("treats a message id repeated within a batch as a redelivery", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const item = enrollItem()
          const other = { ...enrollItem(), messageId: item.messageId }

          const reply = yield* upload(device, [item, item, other])

          expect(reply.body.results.map((r: any) => [r.status, r.replayed])).toEqual([[201, false], [201, true], [
            422,
            false
          ]])
          expect(reply.body.results[2].problem.code).toBe("IdempotencyKeyReused")
          expect(yield* footprint(device)).toMatchObject({ people: 1 })
        }))
    })

    describe("partial failure", () => {
      it.effect("stops at a message it cannot settle; the resent batch runs the rest and replays the applied", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const device = yield* createVenueAndDevice
          const blocked = enrollItem()
          const personId = (blocked.payload as any).personId as string
          const items = [enrollItem(), blocked, enrollItem(), addItem(personId)]
          // The same message sent alone is held inside its handler by the person's lock.
          const locked = yield* Deferred.make<void>()
          const release = yield* Deferred.make<void>()
          const holder = yield* sql.withTransaction(Effect.gen(function*() {
            yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${`gatehouse:person:${personId}`}, 0))`
            yield* Deferred.succeed(locked, undefined)
            yield* Deferred.await(release)
          })).pipe(Effect.fork)
          yield* Deferred.await(locked)
          const alone = yield* Effect.fork(single(device, "POST", "/v1/people", blocked.messageId, blocked.payload))
          yield* eventually(Effect.map(
            sql`SELECT 1 FROM inbox_messages WHERE key = ${blocked.messageId} AND status = 'claimed'`,
            (rows) => rows.length > 0
          ))

          const partial = yield* upload(device, items)
          const during = yield* footprint(device)
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(holder)
          const aloneReply = yield* Fiber.join(alone)
          const resent = yield* upload(device, items)

          expect(partial.status).toBe(200)
          expect(partial.body.results.map((r: any) => [r.status, r.retry, r.problem?.code])).toEqual([
            [201, false, undefined],
            [409, true, "MessageInProgress"],
            [503, true, "MessageNotAttempted"],
            [503, true, "MessageNotAttempted"]
          ])
          expect(partial.body.results[2].problem.blockedBy).toBe(blocked.messageId)
          expect(during).toMatchObject({ people: 1, templates: 1 })
          expect(aloneReply.status).toBe(201)
          expect(resent.body.results.map((r: any) => [r.status, r.replayed, r.retry])).toEqual([
            [201, true, false],
            [201, true, false],
            [201, false, false],
            [201, false, false]
          ])
          expect(resent.body.results[1].body).toEqual(aloneReply.body)
          expect(yield* footprint(device)).toMatchObject({ people: 3, templates: 4 })
        }))

      it.effect("answers a message id reused with another payload 422 for that item only", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const first = enrollItem()
          yield* upload(device, [first])

          const reused = { ...enrollItem(), messageId: first.messageId }
          const fresh = enrollItem()
          const reply = yield* upload(device, [reused, fresh])
          const original = yield* upload(device, [first])

          expect(reply.body.results.map((r: any) => [r.status, r.retry])).toEqual([[422, false], [201, false]])
          expect(reply.body.results[0].problem).toMatchObject({ code: "IdempotencyKeyReused", key: first.messageId })
          expect(original.body.results[0]).toMatchObject({ status: 201, replayed: true })
          expect(yield* footprint(device)).toMatchObject({ people: 2 })
        }))

      it.effect("refuses a redelivered enroll message after the person's erasure, re-creating nothing", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const personId = Crypto.randomUUID()
          const items = [enrollItem(personId), addItem(personId)]
          const first = yield* upload(device, items)

          const erased = yield* single(device, "DELETE", `/v1/people/${personId}`, Crypto.randomUUID())
          const resent = yield* upload(device, items)

          expect(statuses(first)).toEqual([201, 201])
          expect(erased.status).toBe(200)
          expect(resent.body.results.map((r: any) => [r.status, r.problem.code, r.retry])).toEqual([
            [410, "PersonErased", false],
            [410, "PersonErased", false]
          ])
          expect(yield* footprint(device)).toMatchObject({ people: 0, templates: 0, tombstones: 1 })
        }))

      it.effect("refuses the batch's key with another batch (422), applying nothing of it", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const key = Crypto.randomUUID()
          yield* upload(device, [enrollItem()], key)
          const other = enrollItem()

          const reply = yield* upload(device, [other], key)

          expect([reply.status, reply.body.code]).toEqual([422, "IdempotencyKeyReused"])
          expect(yield* stored(device, other.messageId)).toBe(0)
          expect(yield* footprint(device)).toMatchObject({ people: 1 })
        }))
    })

    describe("bad input", () => {
      it.effect("refuses a batch over DEVICE_BATCH_MAX_MESSAGES with 413 BatchTooLarge, applying nothing", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const key = Crypto.randomUUID()
          const items = Array.from({ length: maxMessages + 1 }, () => enrollItem())

          const reply = yield* upload(device, items, key)
          const atCap = yield* upload(device, items.slice(0, maxMessages))

          expect(reply.status).toBe(413)
          expect(reply.headers.get("content-type")).toBe("application/problem+json")
          expect(reply.body).toMatchObject({ code: "BatchTooLarge", limit: maxMessages, count: maxMessages + 1 })
          expect(yield* stored(device, key)).toBe(0)
          expect(atCap.status).toBe(200)
          expect(yield* footprint(device)).toMatchObject({ people: maxMessages })
        }))

      it.effect("answers malformed messages with problems of their own and applies the good ones", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const good = enrollItem()
          const ids = Array.from({ length: 7 }, () => Crypto.randomUUID())
          const person = JSON.stringify(Crypto.randomUUID())
          const consent = JSON.stringify(consentRecord)
          const raw = `{"messages":[
            {"messageId":"${ids[0]}","type":"admit","payload":{}},
            {"messageId":"${ids[1]}","type":"enroll","payload":{"personId":${person},"templates":[]}},
            {"messageId":"${ids[2]}","type":"enroll","payload":{"personId":${person},"consent":${consent},
              "templates":[{"modelId":"test-4d@1","vector":[1e999,0,0,1]}]}},
            {"messageId":"${ids[3]}","type":"addTemplates","payload":{"personId":${person},
              "templates":[{"modelId":"test-4d@1","vector":[1,2,3]}]}},
            {"messageId":"${ids[4]}","type":"erase","payload":{"personId":"not-a-uuid"}},
            {"messageId":"${ids[5]}","type":"identify","payload":{"eventId":${person},
              "probe":{"modelId":"test-4d@1","vector":[1e999,1,1,1]}}},
            {"messageId":"${ids[6]}","type":"consent","payload":{"personId":${person},"state":"maybe"}},
            ${JSON.stringify(good)}
          ]}`

          const reply = yield* uploadRaw(device, raw)

          expect(reply.status).toBe(200)
          expect(reply.body.results.map((r: any) => [r.status, r.problem?.code, r.retry])).toEqual([
            [400, "MessageTypeUnknown", false],
            [400, "InvalidMessage", false],
            [422, "TemplateInvalid", false],
            [422, "TemplateInvalid", false],
            [400, "InvalidMessage", false],
            [422, "ProbeInvalid", false],
            [400, "InvalidMessage", false],
            [201, undefined, false]
          ])
          expect(reply.body.results[1].problem.detail).toMatch(/^messages\[1\]\.payload\.consent/)
          expect(reply.body.results[2].problem.reason).toBe("not-finite")
          expect(reply.body.results[4].problem.errors[0].path).toBe("messages[4].payload.personId")
          for (const id of ids) expect(yield* stored(device, id)).toBe(0)
          expect(yield* footprint(device)).toMatchObject({ people: 1, templates: 1, tombstones: 0 })
        }))

      it.effect("refuses a malformed envelope or a missing key with a 400 problem for the batch, applying nothing", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const good = JSON.stringify(enrollItem())
          const envelopes = [
            `{}`,
            `{"messages":[]}`,
            `{"messages":{"0":${good}}}`,
            `{"messages":[${good},{"type":"enroll","payload":{}}]}`,
            `{"messages":[${good},{"messageId":"two words","type":"enroll","payload":{}}]}`,
            `{"messages":[${good},{"messageId":"${"k".repeat(256)}","type":"enroll","payload":{}}]}`,
            `{"messages":[${good},{"messageId":"m-1","type":"en\\u0000roll","payload":{}}]}`,
            `{"messages":[${good}`
          ]
          const keys = envelopes.map(() => Crypto.randomUUID())

          const replies = yield* Effect.forEach(envelopes, (raw, i) => uploadRaw(device, raw, keys[i]))
          const noKey = yield* request("POST", "/v1/device-messages", {
            key: device.key,
            raw: `{"messages":[${good}]}`
          })

          for (const reply of [...replies, noKey]) {
            expect(reply.status).toBe(400)
            expect(reply.headers.get("content-type")).toBe("application/problem+json")
          }
          expect(replies[3]!.body.detail).toMatch(/^messages\[1\]\.messageId/)
          expect(yield* footprint(device)).toMatchObject({ people: 0, inbox: 0 })
        }))
    })

    describe("contract", () => {
      it.effect("is described in the OpenAPI document, one item shape per message type, with examples", () =>
        Effect.gen(function*() {
          const spec = (yield* request("GET", "/openapi.json")).body

          const operation = spec.paths["/v1/device-messages"].post
          const schemas = spec.components.schemas

          expect(operation.parameters.map((p: any) => p.name)).toContain("idempotency-key")
          expect(Object.keys(operation.responses)).toEqual(
            expect.arrayContaining(["200", "400", "409", "413", "422", "503"])
          )
          expect(schemas.DeviceMessage.anyOf.map((s: any) => s.$ref.split("/").pop())).toEqual([
            "EnrollMessage",
            "AddTemplatesMessage",
            "ConsentMessage",
            "EraseMessage",
            "IdentifyMessage",
            "AdmissionMessage"
          ])
          expect(schemas.DeviceMessagesRequest.examples[0].messages.length).toBeGreaterThan(0)
          expect(schemas.DeviceMessagesResult.examples[0].results.length).toBeGreaterThan(0)
        }))
    })

    describe("identify messages", () => {
      it.effect("replays a redelivered identify message with the first answer and records one attempt", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const device = yield* createVenueAndDevice
          const { eventId } = yield* createEvent(device.venueId)
          const personId = Crypto.randomUUID()
          yield* upload(device, [{ ...enrollItem(personId), payload: enrollPayload(personId, axis(4, 2)) }])
          yield* addGuest(eventId, personId)
          const probe = { modelId: "test-4d@1", vector: axis(4, 2, 0.05) }
          yield* eventually(Effect.map(
            request("POST", "/v1/identify", { key: device.key, body: { eventId, probe } }),
            (r) => r.body?.decision === "match"
          ))
          const item: Item = { messageId: Crypto.randomUUID(), type: "identify", payload: { eventId, probe } }

          const first = yield* upload(device, [item])
          const again = yield* upload(device, [item])
          const unknownEvent = yield* upload(device, [{
            ...item,
            messageId: Crypto.randomUUID(),
            payload: { eventId: Crypto.randomUUID(), probe }
          }])

          expect(first.body.results[0]).toMatchObject({ status: 200, replayed: false })
          expect(first.body.results[0].body).toMatchObject({ decision: "match", candidates: [{ personId }] })
          expect(again.body.results[0]).toMatchObject({ status: 200, replayed: true })
          expect(again.body.results[0].body).toEqual(first.body.results[0].body)
          expect(unknownEvent.body.results[0]).toMatchObject({ status: 404, problem: { code: "EventNotFound" } })
          const attempts = yield* sql<{ n: number }>`
            SELECT count(*)::int AS n FROM audit_log
            WHERE action = 'identification' AND details->>'attemptId' = ${first.body.results[0].body.attemptId}
          `
          expect(attempts[0]!.n).toBe(1)
        }))
    })

    describe("privacy", () => {
      it.effect("keeps template and probe vectors out of processed messages, outbox, audit log and logs", () =>
        Effect.gen(function*() {
          const device = yield* createVenueAndDevice
          const { eventId } = yield* createEvent(device.venueId)
          const values = [0.6180339, -0.4142135, 0.7320508, 0.2360679]
          const probeValues = [0.5772156, 0.3010299, -0.8660254, 0.1428571]
          const norm = Math.hypot(...values)
          const normalised = Float32Array.from(values, (v) => v / norm)
          const personId = Crypto.randomUUID()
          const items: Array<Item> = [
            { messageId: Crypto.randomUUID(), type: "enroll", payload: enrollPayload(personId, values) },
            addItem(personId, values),
            { messageId: Crypto.randomUUID(), type: "enroll", payload: enrollPayload(Crypto.randomUUID(), [1, 2]) },
            {
              messageId: Crypto.randomUUID(),
              type: "identify",
              payload: { eventId, probe: { modelId: "test-4d@1", vector: probeValues } }
            },
            eraseItem(personId)
          ]

          const reply = yield* upload(device, items)
          yield* upload(device, items)

          expect(statuses(reply)).toEqual([201, 201, 422, 200, 200])
          const dumps = yield* storedRows()
          const haystack = dumps.join("\n") + "\n" + logs.join("\n")
          const needles = [
            ...[...values, ...probeValues].map((v) => String(v).slice(3)),
            ...Array.from(normalised, (v) => String(v).slice(3, 9))
          ]

          expect(dumps.length).toBeGreaterThan(0)
          expect(logs.length).toBeGreaterThan(0)
          for (const needle of needles) expect(haystack).not.toContain(needle)
        }))
    })

    describe("redelivery", () => {
      // A fixed set of messages about three people; batches pick from it with duplicates, in any
      // order, and are sent once, again under the same key, or again under a new key.
      const people = 3
      const kinds = ["enroll", "add", "withdraw", "erase"] as const
      const messageCount = people * kinds.length
      const schedule = FastCheck.array(
        FastCheck.record({
          picks: FastCheck.array(FastCheck.nat(messageCount - 1), { minLength: 1, maxLength: 8 }),
          resend: FastCheck.constantFrom("none" as const, "same-key" as const, "new-key" as const)
        }),
        { minLength: 1, maxLength: 4 }
      )

      interface Model {
        readonly exists: Array<boolean>
        readonly templates: Array<number>
        readonly withdrawn: Array<boolean>
        readonly erased: Array<boolean>
        readonly settled: Set<number>
        readonly applied: Set<number>
      }

      /** Applying each distinct message once, at its first delivery, as the service promises. */
      const apply = (model: Model, m: number) => {
        if (model.settled.has(m)) return
        const person = Math.floor(m / kinds.length)
        const kind = kinds[m % kinds.length]!
        if (kind === "erase") {
          model.erased[person] = true
          model.exists[person] = false
          model.templates[person] = 0
          model.settled.add(m)
          model.applied.add(m)
          return
        }
        // Refused before anything is stored, and refused again at every later delivery.
        if (model.erased[person]) return
        model.settled.add(m)
        if (kind === "enroll") {
          model.exists[person] = true
          model.templates[person] = 1
          model.applied.add(m)
        } else if (!model.exists[person]) {
          return
        } else if (kind === "add" && !model.withdrawn[person]) {
          model.templates[person]! += 1
          model.applied.add(m)
        } else if (kind === "withdraw") {
          model.withdrawn[person] = true
          model.applied.add(m)
        }
      }

      it.effect.prop(
        "ends in the state of applying each distinct message once, whatever the batches",
        [schedule],
        ([batches]) =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const device = yield* createVenueAndDevice
            const ids = Array.from({ length: people }, () => Crypto.randomUUID())
            const messages = Array.from({ length: messageCount }, (_, m): Item => {
              const personId = ids[Math.floor(m / kinds.length)]!
              const kind = kinds[m % kinds.length]!
              const messageId = `m-${m}-${personId}`
              if (kind === "enroll") return enrollItem(personId, messageId)
              if (kind === "add") return { ...addItem(personId), messageId }
              if (kind === "withdraw") return { ...withdrawItem(personId), messageId }
              return { ...eraseItem(personId), messageId }
            })
            const model: Model = {
              exists: ids.map(() => false),
              templates: ids.map(() => 0),
              withdrawn: ids.map(() => false),
              erased: ids.map(() => false),
              settled: new Set(),
              applied: new Set()
            }

            const results: Array<any> = []
            for (const { picks, resend } of batches) {
              const key = Crypto.randomUUID()
              const items = picks.map((m) => messages[m]!)
              const sends = resend === "none" ? [key] : [key, resend === "same-key" ? key : Crypto.randomUUID()]
              for (const k of sends) {
                const reply = yield* upload(device, items, k)
                expect(reply.status).toBe(200)
                results.push(...reply.body.results)
              }
              for (const m of picks) apply(model, m)
            }

            const rows = yield* sql<{ id: string; consent: string; templates: number }>`
              SELECT p.id, p.consent_state AS consent,
                     (SELECT count(*)::int FROM templates t WHERE t.person_id = p.id) AS templates
              FROM people p WHERE p.venue_id = ${device.venueId}
            `
            const stones = yield* sql<{ id: string }>`
              SELECT person_id AS id FROM tombstones WHERE venue_id = ${device.venueId}
            `
            const audit = yield* sql<{ action: string; n: number }>`
              SELECT action, count(*)::int AS n FROM audit_log
              WHERE venue_id = ${device.venueId} AND (action LIKE 'person.%' OR action LIKE 'consent.%'
                OR action LIKE 'template.%')
              GROUP BY action
            `
            const expected = ids.flatMap((id, p) =>
              model.exists[p]
                ? [{ id, consent: model.withdrawn[p] ? "withdrawn" : "active", templates: model.templates[p] }]
                : []
            )
            const count = (kind: (typeof kinds)[number]) =>
              [...model.applied].filter((m) => kinds[m % kinds.length] === kind).length

            expect(results.every((r) => !r.retry && r.status < 500)).toBe(true)
            expect([...rows].sort((x, y) => x.id.localeCompare(y.id))).toEqual(
              expected.sort((x, y) => x.id.localeCompare(y.id))
            )
            expect(stones.map((s) => s.id).sort()).toEqual(ids.filter((_, p) => model.erased[p]).sort())
            expect(Object.fromEntries(audit.map((a) => [a.action, a.n]))).toEqual(Object.fromEntries(
              [
                ["person.enrolled", count("enroll")],
                ["consent.granted", count("enroll")],
                ["template.added", count("add")],
                ["consent.withdrawn", count("withdraw")],
                ["person.erased", count("erase")]
              ].filter(([, n]) => n !== 0)
            ))
          }),
        { timeout: 120_000, fastCheck: { numRuns: 15 } }
      )
    })
  })
})
