import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { eventually } from "../support/Eventually.js"
import { request } from "../support/Http.js"
import { addGuest, createEvent, createVenueAndDevice, type TestDevice } from "../support/Identity.js"
import { axis, enrollDirect, withdrawDirect } from "../support/Matching.js"
import { TestServerLive } from "../support/Server.js"

const model = "test-4d@1"

const identify = (device: TestDevice, eventId: string, vector: ReadonlyArray<number>, modelId = model) =>
  request("POST", "/v1/identify", { key: device.key, body: { eventId, probe: { modelId, vector } } })

/** A venue with a device, an event, and one guest enrolled with a template along `index`. */
const scene = (index = 0) =>
  Effect.gen(function*() {
    const device = yield* createVenueAndDevice
    const { eventId } = yield* createEvent(device.venueId)
    const personId = yield* enrollDirect(device.venueId, [{ modelId: model, vector: axis(4, index) }])
    // Adding a guest announces the change: every instance reloads that person.
    yield* addGuest(eventId, personId)
    yield* eventually(Effect.map(identify(device, eventId, axis(4, index)), (r) => r.body?.decision === "match"))
    return { device, eventId, personId }
  })

describe("matching over HTTP", () => {
  // The live clock: the service's poll loop must run for real.
  layer(TestServerLive({ matchingPollMs: 50 }), { excludeTestServices: true })((it) => {
    it.effect("identifies a guest, answers the decision, candidates and threshold, and audits the attempt", () =>
      Effect.gen(function*() {
        const { device, eventId, personId } = yield* scene()
        const sql = yield* SqlClient.SqlClient
        // Long ago, as far as retention can tell: being identified is an interaction that renews it.
        yield* sql`UPDATE people SET last_interaction_at = now() - interval '400 days' WHERE id = ${personId}`

        const reply = yield* identify(device, eventId, [0.93, 0.11, 0.07, 0.05])

        expect(reply.status).toBe(200)
        expect(reply.body).toMatchObject({ decision: "match", eventId, modelId: model, threshold: 0.9 })
        expect(reply.body.candidates).toHaveLength(1)
        expect(reply.body.candidates[0].personId).toBe(personId)
        expect(reply.body.candidates[0].score).toBeGreaterThan(0.9)
        const audited = yield* eventually(Effect.map(
          sql<{ n: number }>`
            SELECT count(*)::int AS n FROM audit_log
            WHERE action = 'identification' AND details->>'attemptId' = ${reply.body.attemptId}
          `,
          (rows) => rows[0]!.n === 1
        ))
        expect(audited).toBeUndefined()
        const [row] = yield* sql<{ details: any; deviceId: string; personId: string }>`
          SELECT details, device_id AS "deviceId", person_id AS "personId" FROM audit_log
          WHERE details->>'attemptId' = ${reply.body.attemptId}
        `
        expect(row!.deviceId).toBe(device.deviceId)
        expect(row!.personId).toBe(personId)
        expect(row!.details).toMatchObject({ modelId: model, threshold: 0.9, decision: "match" })
        expect(JSON.stringify(row!.details)).not.toContain("0.93")
        const [person] = yield* sql<{ recent: boolean }>`
          SELECT last_interaction_at > now() - interval '1 hour' AS recent FROM people WHERE id = ${personId}
        `
        expect(person!.recent).toBe(true)
      }))

    it.effect("searches a 512-dimension gallery on the SIMD kernel and ranks several candidates", () =>
      Effect.gen(function*() {
        const device = yield* createVenueAndDevice
        const { eventId } = yield* createEvent(device.venueId)
        const close = yield* enrollDirect(device.venueId, [{ modelId: "arcface-r100@1", vector: axis(512, 3, 0.01) }])
        const closer = yield* enrollDirect(device.venueId, [{ modelId: "arcface-r100@1", vector: axis(512, 3, 0) }])
        const far = yield* enrollDirect(device.venueId, [{ modelId: "arcface-r100@1", vector: axis(512, 9) }])
        for (const id of [close, closer, far]) yield* addGuest(eventId, id)

        yield* eventually(Effect.map(
          identify(device, eventId, axis(512, 3), "arcface-r100@1"),
          (r) => r.body?.candidates?.length === 2
        ))
        const reply = yield* identify(device, eventId, axis(512, 3), "arcface-r100@1")

        expect(reply.body.candidates.map((c: any) => c.personId)).toEqual([closer, close])
        expect(reply.body.threshold).toBe(0.4)
      }))

    it.effect("keeps devices within their venue: another venue's event is not found", () =>
      Effect.gen(function*() {
        const { eventId } = yield* scene()
        const stranger = yield* createVenueAndDevice

        const reply = yield* identify(stranger, eventId, axis(4, 0))
        const anonymous = yield* request("POST", "/v1/identify", {
          body: { eventId, probe: { modelId: model, vector: axis(4, 0) } }
        })

        expect(reply.status).toBe(404)
        expect(reply.headers.get("content-type")).toBe("application/problem+json")
        expect(reply.body.code).toBe("EventNotFound")
        expect(anonymous.status).toBe(401)
      }))

    it.effect("refuses bad probes with a precise problem and malformed requests with a 400", () =>
      Effect.gen(function*() {
        const { device, eventId } = yield* scene()

        const dimension = yield* identify(device, eventId, [1, 0, 0])
        const zero = yield* identify(device, eventId, [0, 0, 0, 0])
        const unknown = yield* identify(device, eventId, [1, 0, 0, 0], "no-such-model")
        const badEvent = yield* identify(device, "not-a-uuid", [1, 0, 0, 0])
        const badTopK = yield* request("POST", "/v1/identify", {
          key: device.key,
          body: { eventId, probe: { modelId: model, vector: [1, 0, 0, 0] }, topK: 0 }
        })
        const notJson = yield* request("POST", "/v1/identify", { key: device.key, raw: "{\"eventId\": [1, 2" })

        expect([dimension.status, dimension.body.code, dimension.body.reason]).toEqual([
          422,
          "ProbeInvalid",
          "wrong-dimension"
        ])
        expect(zero.body.reason).toBe("zero")
        expect(unknown.body.reason).toBe("unknown-model")
        expect(badEvent.status).toBe(400)
        expect(badTopK.status).toBe(400)
        expect(notJson.status).toBe(400)
      }))

    it.effect("verifies a person of the venue and hides people of other venues", () =>
      Effect.gen(function*() {
        const { device, personId } = yield* scene()
        const stranger = yield* createVenueAndDevice
        const verify = (who: TestDevice, vector: ReadonlyArray<number>) =>
          request("POST", "/v1/verify", { key: who.key, body: { personId, probe: { modelId: model, vector } } })

        const same = yield* verify(device, axis(4, 0))
        const different = yield* verify(device, axis(4, 1))
        const hidden = yield* verify(stranger, axis(4, 0))

        expect(same.status).toBe(200)
        expect(same.body).toMatchObject({ decision: "match", personId, modelId: model, threshold: 0.9 })
        expect(same.body.score).toBeCloseTo(1, 6)
        expect(different.body).toMatchObject({ decision: "no_match" })
        expect(hidden.status).toBe(404)
        expect(hidden.body.code).toBe("PersonNotFound")
      }))

    it.effect("drops a withdrawn person on the announcement", () =>
      Effect.gen(function*() {
        const { device, eventId, personId } = yield* scene(1)

        yield* withdrawDirect(personId, true)

        yield* eventually(Effect.map(identify(device, eventId, axis(4, 1)), (r) => r.body.decision === "no_match"))
        const verified = yield* request("POST", "/v1/verify", {
          key: device.key,
          body: { personId, probe: { modelId: model, vector: axis(4, 1) } }
        })
        expect(verified.body).toMatchObject({ decision: "no_match", score: null })
      }))

    it.effect("drops a withdrawn person on the next poll when the announcement is lost", () =>
      Effect.gen(function*() {
        const { device, eventId, personId } = yield* scene(2)

        yield* withdrawDirect(personId, false)

        yield* eventually(Effect.map(identify(device, eventId, axis(4, 2)), (r) => r.body.decision === "no_match"))
      }))

    it.effect("lists identify and verify in the OpenAPI document with examples", () =>
      Effect.gen(function*() {
        const spec = yield* request("GET", "/openapi.json")

        expect(Object.keys(spec.body.paths)).toEqual(expect.arrayContaining(["/v1/identify", "/v1/verify"]))
        expect(JSON.stringify(spec.body.components.schemas.IdentifyRequest)).toContain("examples")
      }))
  })
})
