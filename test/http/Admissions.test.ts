import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import * as Crypto from "node:crypto"
import { type Direction, firstViolation, Outcome } from "../../src/domain/CheckIn.js"
import { ProviderSim } from "../../src/sim/ProviderSim.js"
import { eventually, settle } from "../support/Eventually.js"
import { listAdmissions, postScan, scanBody, scene } from "../support/Gate.js"
import { request } from "../support/Http.js"
import { addGuest, createDevice, createEvent, createVenueAndDevice, enroll } from "../support/Identity.js"
import { axis } from "../support/Matching.js"
import { adminKey } from "../support/Server.js"
import { syncNow, TicketingServerLive } from "../support/Ticketing.js"

const configureList = (eventId: string, allowReentry: boolean) =>
  request("PUT", `/v1/admin/events/${eventId}/check-in-list`, { key: adminKey, body: { allowReentry } })

const countRows = (table: "admissions" | "inbox_messages", where: { eventId?: string; scope?: string }) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    (table === "admissions"
      ? sql<{ n: number }>`SELECT count(*)::int AS n FROM admissions WHERE event_id = ${where.eventId!}`
      : sql<{ n: number }>`SELECT count(*)::int AS n FROM inbox_messages WHERE scope = ${where.scope!}`).pipe(
        Effect.map((rows) => rows[0]!.n),
        Effect.orDie
      ))

describe("admissions over HTTP", () => {
  it.layer(TicketingServerLive())((it) => {
    it.effect("grants an identified ticket holder once and denies the rest with reason codes", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const { gate, eventId, slug, holders, spare } = yield* scene({ holders: 1, spare: 2 })
        const [holder] = holders
        const guest = yield* enroll(gate, { vectors: [axis(4, 2)] })
        yield* addGuest(eventId, guest.personId)
        const otherEvent = yield* createEvent(gate.venueId)
        const cancelled = [...sim.event(slug)!.positions.values()].find((p) => p.secret === spare[1])!
        sim.cancel(cancelled.id)
        yield* syncNow(eventId)
        const sql = yield* SqlClient.SqlClient
        // Being identified at a gate is an interaction: it renews the person's retention date.
        yield* sql`UPDATE people SET last_interaction_at = now() - interval '400 days' WHERE id = ${holder!.personId}`

        const first = yield* postScan(gate, scanBody(eventId, { probe: holder!.face }))
        const again = yield* postScan(gate, scanBody(eventId, { probe: holder!.face }, { gate: "south" }))
        const stranger = yield* postScan(gate, scanBody(eventId, { probe: axis(4, 3) }))
        const guestScan = yield* postScan(gate, scanBody(eventId, { probe: axis(4, 2) }))
        const byTicket = yield* postScan(gate, scanBody(eventId, { ticket: spare[0]! }))
        const unknown = yield* postScan(gate, scanBody(eventId, { ticket: "NO-SUCH-SECRET" }))
        const revoked = yield* postScan(gate, scanBody(eventId, { ticket: spare[1]! }))
        const elsewhere = yield* postScan(gate, scanBody(otherEvent.eventId, { ticket: spare[0]! }))
        const otherVenue = yield* scene({ holders: 0, spare: 1 })
        const foreign = yield* postScan(gate, scanBody(eventId, { ticket: otherVenue.spare[0]! }))

        expect(first.status).toBe(200)
        expect(first.body).toMatchObject({
          decision: "granted",
          reason: null,
          personId: holder!.personId,
          eventId,
          deviceId: gate.deviceId,
          method: "probe",
          modelId: "test-4d@1",
          threshold: 0.9,
          replayed: false
        })
        expect(first.body.score).toBeGreaterThanOrEqual(0.9)
        expect(first.body.ticketId).toEqual(expect.any(String))
        expect(first.body).not.toHaveProperty("probe")
        expect(again.body).toMatchObject({
          decision: "denied",
          reason: "already_admitted",
          ticketId: first.body.ticketId
        })
        expect(stranger.body).toMatchObject({ decision: "denied", reason: "no_match", personId: null, ticketId: null })
        expect(guestScan.body).toMatchObject({ decision: "denied", reason: "no_ticket", personId: guest.personId })
        expect(byTicket.body).toMatchObject({ decision: "granted", method: "ticket", personId: null })
        expect(unknown.body).toMatchObject({ decision: "denied", reason: "unknown_ticket" })
        expect(revoked.body).toMatchObject({ decision: "denied", reason: "ticket_cancelled" })
        expect(elsewhere.body).toMatchObject({ decision: "denied", reason: "not_in_event" })
        expect(foreign.body).toMatchObject({ decision: "denied", reason: "unknown_ticket", ticketId: null })
        const [renewed] = yield* sql<{ recent: boolean }>`
          SELECT last_interaction_at > now() - interval '1 hour' AS recent FROM people WHERE id = ${holder!.personId}
        `
        expect(renewed!.recent).toBe(true)
      }))

    it.effect("lets a ticket in again after an exit only when the event's list allows re-entry", () =>
      Effect.gen(function*() {
        const { gate, eventId, spare } = yield* scene({ holders: 0, spare: 2 })
        const pass = (secret: string, direction: Direction) =>
          Effect.map(
            postScan(gate, scanBody(eventId, { ticket: secret }, { direction })),
            (r) => [r.body.decision, r.body.reason]
          )

        const before = yield* request("GET", `/v1/admin/events/${eventId}/check-in-list`, { key: adminKey })
        const strict = [
          yield* pass(spare[0]!, "entry"),
          yield* pass(spare[0]!, "exit"),
          yield* pass(spare[0]!, "entry")
        ]
        const configured = yield* configureList(eventId, true)
        const after = yield* request("GET", `/v1/admin/events/${eventId}/check-in-list`, { key: adminKey })
        const lenient = [
          yield* pass(spare[1]!, "entry"),
          yield* pass(spare[1]!, "entry"),
          yield* pass(spare[1]!, "exit"),
          yield* pass(spare[1]!, "entry")
        ]

        expect(before.body).toMatchObject({ eventId, allowReentry: false })
        expect(strict).toEqual([["granted", null], ["granted", null], ["denied", "already_admitted"]])
        expect(configured.status).toBe(200)
        expect(after.body).toMatchObject({ eventId, allowReentry: true, listId: before.body.listId })
        expect(lenient).toEqual([["granted", null], ["denied", "already_admitted"], ["granted", null], [
          "granted",
          null
        ]])
      }))

    it.effect("replays a scan's first outcome by Idempotency-Key and by nonce, and refuses a reused nonce", () =>
      Effect.gen(function*() {
        const { gate, eventId, spare } = yield* scene({ holders: 0, spare: 1 })
        const body = scanBody(eventId, { ticket: spare[0]! })

        const first = yield* postScan(gate, body, "key-1")
        const sameKey = yield* postScan(gate, body, "key-1")
        const sameNonce = yield* postScan(gate, body, "key-2")
        const reused = yield* postScan(gate, { ...body, direction: "exit" }, "key-3")
        const keyReused = yield* postScan(gate, { ...body, gate: "south" }, "key-1")

        expect(first.body).toMatchObject({ decision: "granted", replayed: false })
        expect(sameKey.status).toBe(200)
        expect(sameKey.headers.get("idempotent-replayed")).toBe("true")
        expect(sameKey.body).toEqual(first.body)
        expect(sameNonce.status).toBe(200)
        expect(sameNonce.headers.get("idempotent-replayed")).toBeNull()
        expect(sameNonce.body).toEqual({ ...first.body, replayed: true })
        expect(reused.status).toBe(422)
        expect(reused.headers.get("content-type")).toContain("application/problem+json")
        expect(reused.body).toMatchObject({ code: "ScanNonceReused", nonce: body.nonce })
        expect(keyReused.status).toBe(422)
        expect(keyReused.body.code).toBe("IdempotencyKeyReused")
        expect(yield* countRows("admissions", { eventId })).toBe(1)
      }))

    it.effect("records an offline double use as a flagged fact and lists it among the conflicts", () =>
      Effect.gen(function*() {
        const { gate, eventId, holders } = yield* scene({ holders: 1 })
        const side = yield* createDevice(gate.venueId, "side gate")

        const online = yield* postScan(gate, scanBody(eventId, { probe: holders[0]!.face }))
        const offline = yield* postScan(
          side,
          scanBody(eventId, { probe: holders[0]!.face }, { offline: true, deviceTime: "2024-06-01T19:05:00.000Z" })
        )
        const all = yield* listAdmissions(eventId)
        const flagged = yield* listAdmissions(eventId, "&flagged=true", gate.key)

        expect(online.body.decision).toBe("granted")
        expect(offline.status).toBe(200)
        expect(offline.body).toMatchObject({
          decision: "granted",
          reason: null,
          flagged: "already_admitted",
          offline: true,
          deviceTime: "2024-06-01T19:05:00.000Z"
        })
        expect(all.body.admissions.map((a: any) => a.admissionId)).toEqual([
          online.body.admissionId,
          offline.body.admissionId
        ])
        expect(all.body.conflicts).toEqual([expect.objectContaining({
          admissionId: offline.body.admissionId,
          reason: "already_admitted",
          earlierAdmissionId: online.body.admissionId,
          ticketId: online.body.ticketId
        })])
        expect(flagged.status).toBe(200)
        expect(flagged.body.admissions.map((a: any) => a.admissionId)).toEqual([offline.body.admissionId])
        expect(flagged.body.conflicts).toHaveLength(1)
      }))

    it.effect("pages through an event's admissions in decision order", () =>
      Effect.gen(function*() {
        const { gate, eventId, spare } = yield* scene({ holders: 0, spare: 3 })
        const ids = []
        for (const secret of spare) {
          ids.push((yield* postScan(gate, scanBody(eventId, { ticket: secret }))).body.admissionId)
        }

        const page1 = yield* request("GET", `/v1/events/${eventId}/admissions?limit=2`, { key: gate.key })
        const page2 = yield* request("GET", `/v1/events/${eventId}/admissions?limit=2&after=${page1.body.next}`, {
          key: gate.key
        })

        expect(page1.body.admissions.map((a: any) => a.admissionId)).toEqual(ids.slice(0, 2))
        expect(page1.body.next).toBe(ids[1])
        expect(page2.body.admissions.map((a: any) => a.admissionId)).toEqual(ids.slice(2))
        expect(page2.body.next).toBeNull()
      }))

    it.effect("does not let a device act in, or read, another venue's event", () =>
      Effect.gen(function*() {
        const { eventId, spare } = yield* scene({ holders: 0, spare: 1 })
        const outsider = yield* createVenueAndDevice

        const scan = yield* postScan(outsider, scanBody(eventId, { ticket: spare[0]! }))
        const list = yield* listAdmissions(eventId, "", outsider.key)
        const unknown = yield* postScan(outsider, scanBody(Crypto.randomUUID(), { ticket: spare[0]! }))

        expect(scan.status).toBe(404)
        expect(scan.headers.get("content-type")).toContain("application/problem+json")
        expect(scan.body.code).toBe("EventNotFound")
        expect(unknown.body).toEqual({ ...scan.body, id: unknown.body.id, detail: unknown.body.detail })
        expect(list.status).toBe(404)
        expect(yield* countRows("admissions", { eventId })).toBe(0)
      }))

    it.effect("refuses bad scans with a precise problem and writes nothing", () =>
      Effect.gen(function*() {
        const { gate, eventId, holders } = yield* scene({ holders: 1 })
        const good = scanBody(eventId, { probe: holders[0]!.face })
        const { probe: _, ...noTarget } = good as typeof good & { probe: unknown }
        const cases: ReadonlyArray<readonly [string, unknown, number, string, string?]> = [
          ["both probe and ticket", { ...good, ticket: { reference: "x" } }, 400, "InvalidRequest", "probe"],
          ["neither probe nor ticket", noTarget, 400, "InvalidRequest", "ticket"],
          ["unknown direction", { ...good, direction: "sideways" }, 400, "InvalidRequest", "direction"],
          ["empty nonce", { ...good, nonce: "" }, 400, "InvalidRequest", "nonce"],
          ["long nonce", { ...good, nonce: "n".repeat(129) }, 400, "InvalidRequest", "nonce"],
          ["NUL in the gate", { ...good, gate: "a\u0000b" }, 400, "InvalidRequest", "gate"],
          ["bad device time", { ...good, deviceTime: "yesterday" }, 400, "InvalidRequest", "deviceTime"],
          ["bad event id", { ...good, eventId: "not-a-uuid" }, 400, "InvalidRequest", "eventId"],
          ["unknown model", { ...good, probe: { modelId: "nope@1", vector: [1, 0, 0, 0] } }, 422, "ProbeRejected"],
          ["wrong dimension", { ...good, probe: { modelId: "test-4d@1", vector: [1, 0] } }, 422, "ProbeRejected"],
          ["zero vector", { ...good, probe: { modelId: "test-4d@1", vector: [0, 0, 0, 0] } }, 422, "ProbeRejected"]
        ]

        const messagesBefore = yield* countRows("inbox_messages", { scope: `device:${gate.deviceId}` })

        const replies = yield* Effect.forEach(cases, ([, body]) => postScan(gate, body))
        const noKey = yield* request("POST", "/v1/admissions", { key: gate.key, body: good })

        replies.forEach((reply, i) => {
          const [what, , status, code, path] = cases[i]!
          expect([what, reply.status, reply.body?.code]).toEqual([what, status, code])
          expect(reply.headers.get("content-type")).toContain("application/problem+json")
          if (path !== undefined) expect([what, reply.body.detail]).toEqual([what, expect.stringContaining(path)])
        })
        expect(noKey.status).toBe(400)
        expect(noKey.body.detail).toContain("Idempotency-Key")
        expect(yield* countRows("admissions", { eventId })).toBe(0)
        expect(yield* countRows("inbox_messages", { scope: `device:${gate.deviceId}` })).toBe(messagesBefore)
      }))

    it.effect("lets exactly one of concurrent scans of one ticket at two gates in", () =>
      Effect.gen(function*() {
        const { gate, eventId, spare } = yield* scene({ holders: 0, spare: 1 })
        const south = yield* createDevice(gate.venueId, "south gate")

        const replies = yield* Effect.all(
          Array.from({ length: 12 }, (_, i) =>
            postScan(i % 2 === 0 ? gate : south, scanBody(eventId, { ticket: spare[0]! }, { gate: `g${i % 2}` }))),
          { concurrency: "unbounded" }
        )

        expect(replies.every((r) =>
          r.status === 200
        )).toBe(true)
        expect(replies.filter((r) => r.body.decision === "granted")).toHaveLength(1)
        expect(replies.filter((r) => r.body.reason === "already_admitted")).toHaveLength(11)
      }))

    it.effect("audits admissions with ids, score, threshold and model, and stores the probe nowhere", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { gate, eventId, holders } = yield* scene({ holders: 1 })
        // A probe close to the holder's template with digits that appear nowhere else.
        const probe = [0.987654321, 0.0123456789, 0.0111222333, 0.0444555666]

        const reply = yield* postScan(gate, scanBody(eventId, { probe }))
        const [audit] = yield* sql<{ details: any; personId: string; deviceId: string }>`
          SELECT details, person_id AS "personId", device_id AS "deviceId" FROM audit_log
          WHERE action = 'admission' AND event_id = ${eventId}
        `
        const stored = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM (
            SELECT details::text AS t FROM audit_log
            UNION ALL SELECT row_to_json(a)::text FROM admissions a
            UNION ALL SELECT row_to_json(i)::text FROM inbox_messages i
            UNION ALL SELECT row_to_json(o)::text FROM outbox o
            UNION ALL SELECT row_to_json(j)::text FROM jobs j
          ) AS everything
          WHERE t LIKE '%987654321%' OR t LIKE '%0123456789%'
        `

        expect(reply.body).toMatchObject({ decision: "granted", personId: holders[0]!.personId })
        expect(audit).toMatchObject({ personId: holders[0]!.personId, deviceId: gate.deviceId })
        expect(audit!.details).toMatchObject({
          admissionId: reply.body.admissionId,
          ticketId: reply.body.ticketId,
          decision: "granted",
          score: reply.body.score,
          threshold: 0.9,
          modelId: "test-4d@1",
          attemptId: expect.any(String)
        })
        expect(stored[0]!.n).toBe(0)
      }))

    it.effect("writes each granted check-in back to the provider once, and nothing for a denial", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const { gate, eventId, holders, spare } = yield* scene({ holders: 1, spare: 1 })
        const face = holders[0]!.face

        const entry = yield* postScan(gate, scanBody(eventId, { probe: face }))
        const denied = yield* postScan(gate, scanBody(eventId, { probe: face }))
        const exit = yield* postScan(gate, scanBody(eventId, { probe: face }, { direction: "exit" }))
        const byTicket = yield* postScan(gate, scanBody(eventId, { ticket: spare[0]! }, { offline: true }))
        yield* eventually(
          Effect.sync(() => sim.checkinsFor().filter((c) => c.nonce.includes(gate.deviceId)).length === 3)
        )
        const written = (secret: string) =>
          sim.checkinsFor(secret).map((c) => [c.nonce, c.type, c.datetime, c.requests])
        const nonce = (reply: { body: any }) => `gatehouse:${gate.deviceId}:${reply.body.nonce}`

        expect(denied.body.decision).toBe("denied")
        expect(written(holders[0]!.secret)).toEqual([
          [nonce(entry), "entry", entry.body.serverTime, 1],
          [nonce(exit), "exit", exit.body.serverTime, 1]
        ])
        expect(written(spare[0]!)).toEqual([[nonce(byTicket), "entry", byTicket.body.deviceTime, 1]])
      }))

    it.effect("records a scan's identification attempt once, in the transaction that stores its decision", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { gate, eventId, holders } = yield* scene({ holders: 1 })
        const body = scanBody(eventId, { probe: holders[0]!.face })

        const first = yield* postScan(gate, body)
        const copy = yield* postScan(gate, body)
        const rows = yield* sql<{ action: string; tx: string }>`
          SELECT action, xmin::text AS tx FROM audit_log
          WHERE event_id = ${eventId} AND device_id = ${gate.deviceId}
            AND action IN ('admission', 'identification')
            AND (details->>'admissionId' = ${String(first.body.admissionId)}
              OR details->>'attemptId' = (
                SELECT details->>'attemptId' FROM audit_log
                WHERE action = 'admission' AND details->>'admissionId' = ${String(first.body.admissionId)}
              ))
        `

        expect(copy.body).toMatchObject({ admissionId: first.body.admissionId, replayed: true })
        expect(rows.map((r) => r.action).sort()).toEqual(["admission", "identification"])
        // One writer: a scan never waits for another connection to write its attempt.
        expect(new Set(rows.map((r) => r.tx)).size).toBe(1)
      }))

    // Scans of one ticket with distinct nonces, each delivered one to three times (a resend with
    // its Idempotency-Key, or the same nonce under a new key), in any order and concurrently.
    const schedule = fc.array(
      fc.record({
        direction: fc.constantFrom<Direction>("entry", "entry", "exit"),
        offline: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
        copies: fc.array(fc.boolean(), { minLength: 1, maxLength: 3 })
      }),
      { minLength: 1, maxLength: 8 }
    ).chain((scans) => {
      const deliveries = scans.flatMap((s, i) => s.copies.map((newKey, c) => ({ scan: i, newKey: c > 0 && newKey })))
      return fc.record({
        scans: fc.constant(scans),
        order: fc.shuffledSubarray(deliveries, { minLength: deliveries.length, maxLength: deliveries.length }),
        allowReentry: fc.boolean()
      })
    })

    it.effect.prop(
      "keeps at most one granted entry between exits and answers every copy with the first outcome",
      [schedule],
      ([g]) =>
        Effect.gen(function*() {
          const { gate, eventId, spare } = yield* scene({ holders: 0, spare: 1 })
          yield* configureList(eventId, g.allowReentry)
          const bodies = g.scans.map((s) =>
            scanBody(eventId, { ticket: spare[0]! }, { direction: s.direction, offline: s.offline })
          )
          const keys = bodies.map(() => Crypto.randomUUID())

          // A copy that finds its first copy still running is answered 409; the device sends it again.
          const deliver = (scan: number, key: string) =>
            Effect.gen(function*() {
              let reply = yield* postScan(gate, bodies[scan], key)
              for (let i = 0; reply.status === 409 && i < 100; i++) {
                yield* settle(10)
                reply = yield* postScan(gate, bodies[scan], key)
              }
              return { scan, status: reply.status, body: reply.body }
            })
          const replies = yield* Effect.all(
            g.order.map((d) => deliver(d.scan, d.newKey ? Crypto.randomUUID() : keys[d.scan]!)),
            { concurrency: 3 }
          )
          const stored = (yield* listAdmissions(eventId)).body.admissions as Array<any>

          expect(replies.filter((r) => r.status !== 200)).toEqual([])
          expect(stored).toHaveLength(g.scans.length)
          const outcome = (a: any) => new Outcome({ decision: a.decision, reason: a.reason, flagged: a.flagged })
          const history = stored.map((a) => ({ direction: a.direction, outcome: outcome(a) }))
          expect(firstViolation({ allowReentry: g.allowReentry }, history)).toBe(-1)
          const first = new Map(stored.map((a) => [a.nonce, a.admissionId]))
          for (const r of replies) expect(r.body.admissionId).toBe(first.get(bodies[r.scan]!.nonce))
        }),
      { fastCheck: { numRuns: 12 } }
    )

    it.effect("takes offline scans as device-message batch items, one message with the same scan sent alone", () =>
      Effect.gen(function*() {
        const { gate, eventId, spare } = yield* scene({ holders: 0, spare: 2 })
        const offline = { offline: true, deviceTime: "2024-06-01T18:55:00.000Z" }
        const first = scanBody(eventId, { ticket: spare[0]! }, offline)
        const double = scanBody(eventId, { ticket: spare[0]! }, { ...offline, gate: "south" })
        const other = scanBody(eventId, { ticket: spare[1]! }, offline)
        const items = [first, double, other].map((payload) => ({
          messageId: Crypto.randomUUID(),
          type: "admission",
          payload
        }))
        const upload = () =>
          request("POST", "/v1/device-messages", {
            key: gate.key,
            body: { messages: items },
            headers: { "idempotency-key": Crypto.randomUUID() }
          })

        const batch = yield* upload()
        const resent = yield* upload()
        const alone = yield* postScan(gate, double, items[1]!.messageId)

        expect(batch.status).toBe(200)
        expect(batch.body.results.map((r: any) => [r.type, r.status, r.replayed, r.body.decision, r.body.flagged]))
          .toEqual([
            ["admission", 200, false, "granted", null],
            ["admission", 200, false, "granted", "already_admitted"],
            ["admission", 200, false, "granted", null]
          ])
        expect(resent.body.results.map((r: any) => [r.replayed, r.body.admissionId])).toEqual(
          batch.body.results.map((r: any) => [true, r.body.admissionId])
        )
        expect(alone.headers.get("idempotent-replayed")).toBe("true")
        expect(alone.body.admissionId).toBe(batch.body.results[1].body.admissionId)
        expect(yield* countRows("admissions", { eventId })).toBe(3)
        const listed = yield* listAdmissions(eventId, "&flagged=true")
        expect(listed.body.conflicts.map((c: any) => c.admissionId)).toEqual([batch.body.results[1].body.admissionId])
      }))
  })
})
