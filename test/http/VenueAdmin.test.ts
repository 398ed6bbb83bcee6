import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import { request } from "../support/Http.js"
import { createDevice, createEvent, createVenue, createVenueAndDevice } from "../support/Identity.js"
import { adminKey, TestServerLive } from "../support/Server.js"

describe("venue administration and device keys", () => {
  it.layer(TestServerLive())((it) => {
    it.effect("creates venues, devices and events, and lists them", () =>
      Effect.gen(function*() {
        const venue = yield* createVenue("Arena")
        const device = yield* createDevice(venue.venueId, "north gate")
        const event = yield* createEvent(venue.venueId, { name: "opening night" })

        const venues = yield* request("GET", "/v1/admin/venues", { key: adminKey })
        const devices = yield* request("GET", `/v1/admin/devices?venueId=${venue.venueId}`, { key: adminKey })
        const events = yield* request("GET", `/v1/admin/events?venueId=${venue.venueId}`, { key: adminKey })

        expect(venues.body.venues.map((v: any) => v.name)).toContain("Arena")
        expect(devices.body.devices).toHaveLength(1)
        expect(devices.body.devices[0].deviceId).toBe(device.deviceId)
        expect(devices.body.devices[0].keys[0].hint).toBe(device.key.slice(0, 13))
        expect(JSON.stringify(devices.body)).not.toContain(device.key)
        expect(events.body.events.map((e: any) => e.eventId)).toEqual([event.eventId])
      }))

    it.effect("stores device keys only as hashes", () =>
      Effect.gen(function*() {
        const device = yield* createVenueAndDevice
        const sql = yield* SqlClient.SqlClient

        const rows = yield* sql<{ hash: string }>`SELECT encode(key_hash, 'hex') AS hash FROM device_keys`

        expect(rows.length).toBeGreaterThan(0)
        expect(rows.map((r) => r.hash)).toContain(Crypto.createHash("sha256").update(device.key).digest("hex"))
        const dump = yield* sql<{ t: string }>`SELECT row_to_json(k)::text AS t FROM device_keys k`
        expect(dump.map((r) => r.t).join("")).not.toContain(device.key.slice(13))
      }))

    it.effect("authenticates a device for its own venue only", () =>
      Effect.gen(function*() {
        const a = yield* createVenueAndDevice
        const b = yield* createVenueAndDevice
        const eventOfB = yield* createEvent(b.venueId)

        const whoami = yield* request("GET", "/v1/device", { key: a.key })
        const own = yield* request("GET", `/v1/events/${eventOfB.eventId}`, { key: b.key })
        const foreign = yield* request("GET", `/v1/events/${eventOfB.eventId}`, { key: a.key })
        const listed = yield* request("GET", "/v1/events", { key: a.key })

        expect(whoami.body).toEqual({ deviceId: a.deviceId, venueId: a.venueId })
        expect(own.status).toBe(200)
        expect(foreign.status).toBe(404)
        expect(foreign.body.code).toBe("EventNotFound")
        expect(listed.body.events).toEqual([])
      }))

    it.effect("refuses missing, malformed, unknown and admin keys on device endpoints", () =>
      Effect.gen(function*() {
        const none = yield* request("GET", "/v1/device")
        const malformed = yield* request("GET", "/v1/device", { key: "not a key" })
        const unknown = yield* request("GET", "/v1/device", {
          key: `gh_dev_${Crypto.randomBytes(32).toString("base64url")}`
        })
        const admin = yield* request("GET", "/v1/device", { key: adminKey })

        for (const reply of [none, malformed, unknown, admin]) {
          expect(reply.status).toBe(401)
          expect(reply.headers.get("content-type")).toBe("application/problem+json")
        }
      }))

    it.effect("refuses device keys on admin endpoints", () =>
      Effect.gen(function*() {
        const device = yield* createVenueAndDevice

        const reply = yield* request("GET", "/v1/admin/venues", { key: device.key })

        expect(reply.status).toBe(401)
      }))

    it.effect("rotates and revokes keys, and revokes whole devices", () =>
      Effect.gen(function*() {
        const device = yield* createVenueAndDevice
        const second = yield* request("POST", `/v1/admin/devices/${device.deviceId}/keys`, { key: adminKey })
        const firstKeyId = (yield* request("GET", `/v1/admin/devices/${device.deviceId}`, { key: adminKey }))
          .body.keys[0].keyId

        const bothWork = [
          (yield* request("GET", "/v1/device", { key: device.key })).status,
          (yield* request("GET", "/v1/device", { key: second.body.apiKey })).status
        ]
        const revoked = yield* request("DELETE", `/v1/admin/devices/${device.deviceId}/keys/${firstKeyId}`, {
          key: adminKey
        })
        const again = yield* request("DELETE", `/v1/admin/devices/${device.deviceId}/keys/${firstKeyId}`, {
          key: adminKey
        })
        const afterKeyRevoked = [
          (yield* request("GET", "/v1/device", { key: device.key })).status,
          (yield* request("GET", "/v1/device", { key: second.body.apiKey })).status
        ]
        const deviceRevoked = yield* request("DELETE", `/v1/admin/devices/${device.deviceId}`, { key: adminKey })
        const afterDeviceRevoked = (yield* request("GET", "/v1/device", { key: second.body.apiKey })).status

        expect(second.status).toBe(201)
        expect(bothWork).toEqual([200, 200])
        expect(revoked.status).toBe(200)
        expect(again.body.revokedAt).toBe(revoked.body.revokedAt)
        expect(afterKeyRevoked).toEqual([401, 200])
        expect(deviceRevoked.body.revokedAt).not.toBeNull()
        expect(afterDeviceRevoked).toBe(401)
      }))

    it.effect("answers unknown venues, devices and events with typed problems", () =>
      Effect.gen(function*() {
        const missing = Crypto.randomUUID()

        const device = yield* request("POST", "/v1/admin/devices", {
          key: adminKey,
          body: { venueId: missing, name: "x" }
        })
        const getDevice = yield* request("GET", `/v1/admin/devices/${missing}`, { key: adminKey })
        const event = yield* request("GET", `/v1/admin/events/${missing}`, { key: adminKey })
        const badId = yield* request("GET", "/v1/admin/events/not-a-uuid", { key: adminKey })

        expect([device.status, device.body.code]).toEqual([404, "VenueNotFound"])
        expect([getDevice.status, getDevice.body.code]).toEqual([404, "DeviceNotFound"])
        expect([event.status, event.body.code]).toEqual([404, "EventNotFound"])
        expect(badId.status).toBe(400)
      }))

    it.effect("refuses events that end before they start and names with NUL characters", () =>
      Effect.gen(function*() {
        const venue = yield* createVenue()

        const backwards = yield* request("POST", "/v1/admin/events", {
          key: adminKey,
          body: { venueId: venue.venueId, name: "x", startsAt: "2030-01-02T00:00:00Z", endsAt: "2030-01-01T00:00:00Z" }
        })
        const nul = yield* request("POST", "/v1/admin/venues", { key: adminKey, body: { name: "a\u0000b" } })
        const surrogate = yield* request("POST", "/v1/admin/venues", {
          key: adminKey,
          raw: "{\"name\":\"a\\ud800b\"}"
        })

        expect([backwards.status, backwards.body.code]).toEqual([422, "EventTimesInvalid"])
        expect(nul.status).toBe(400)
        expect(surrogate.status).toBe(400)
      }))

    it.effect("manages event guests and reports gallery membership", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const venue = yield* createVenue()
        const other = yield* createVenue()
        const event = yield* createEvent(venue.venueId)
        const personId = Crypto.randomUUID()
        const strangerId = Crypto.randomUUID()
        yield* sql`INSERT INTO people (id, venue_id, consent_state) VALUES (${personId}, ${venue.venueId}, 'active')`
        yield* sql`INSERT INTO people (id, venue_id, consent_state) VALUES (${strangerId}, ${other.venueId}, 'active')`

        const added = yield* request("PUT", `/v1/admin/events/${event.eventId}/guests/${personId}`, { key: adminKey })
        const twice = yield* request("PUT", `/v1/admin/events/${event.eventId}/guests/${personId}`, { key: adminKey })
        const foreign = yield* request("PUT", `/v1/admin/events/${event.eventId}/guests/${strangerId}`, {
          key: adminKey
        })
        const unknown = yield* request("PUT", `/v1/admin/events/${event.eventId}/guests/${Crypto.randomUUID()}`, {
          key: adminKey
        })
        const gallery = yield* sql`SELECT person_id FROM event_gallery WHERE event_id = ${event.eventId}`
        const removed = yield* request("DELETE", `/v1/admin/events/${event.eventId}/guests/${personId}`, {
          key: adminKey
        })
        const after = yield* request("GET", `/v1/admin/events/${event.eventId}/guests`, { key: adminKey })

        expect(added.status).toBe(200)
        expect(added.body.inGallery).toBe(true)
        expect(twice.body.addedAt).toBe(added.body.addedAt)
        expect([foreign.status, foreign.body.code]).toEqual([422, "VenueMismatch"])
        expect([unknown.status, unknown.body.code]).toEqual([404, "PersonNotFound"])
        expect(gallery).toHaveLength(1)
        expect(removed.status).toBe(200)
        expect(after.body.guests).toEqual([])
      }))

    it.effect("records administrative changes in the audit log", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const device = yield* createVenueAndDevice

        const actions = yield* sql<{ action: string }>`
          SELECT action FROM audit_log WHERE venue_id = ${device.venueId} ORDER BY id
        `
        const tamper = yield* Effect.either(sql`UPDATE audit_log SET action = 'x'`)

        expect(actions.map((a) => a.action)).toEqual(["venue.created", "device.created", "device.key_issued"])
        expect(tamper._tag).toBe("Left")
      }))
    it.effect("pages through the audit log with filters", () =>
      Effect.gen(function*() {
        const device = yield* createVenueAndDevice
        yield* request("POST", `/v1/admin/devices/${device.deviceId}/keys`, { key: adminKey })

        const first = yield* request("GET", `/v1/admin/audit?venueId=${device.venueId}&limit=2`, { key: adminKey })
        const second = yield* request(
          "GET",
          `/v1/admin/audit?venueId=${device.venueId}&limit=2&after=${first.body.next}`,
          {
            key: adminKey
          }
        )
        const keys = yield* request("GET", `/v1/admin/audit?venueId=${device.venueId}&action=device.key_issued`, {
          key: adminKey
        })
        const bad = yield* request("GET", "/v1/admin/audit?limit=0", { key: adminKey })
        const anonymous = yield* request("GET", "/v1/admin/audit")

        expect(first.body.records.map((r: any) => r.action)).toEqual(["venue.created", "device.created"])
        expect(second.body.records.map((r: any) => r.action)).toEqual(["device.key_issued", "device.key_issued"])
        expect(keys.body.records).toHaveLength(2)
        expect(keys.body.next).toBeNull()
        expect(bad.status).toBe(400)
        expect(anonymous.status).toBe(401)
      }))

    it.effect("lets an admin read and erase a person of any venue", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const venue = yield* createVenue()
        const personId = Crypto.randomUUID()
        yield* sql`INSERT INTO people (id, venue_id, consent_state) VALUES (${personId}, ${venue.venueId}, 'active')`
        yield* sql`
          INSERT INTO consent_records (person_id, state, purposes, notice_version, jurisdiction, method, given_at)
          VALUES (${personId}, 'granted', '{venue-admission}', 'n1', 'EU-GDPR', 'kiosk', now())
        `

        const read = yield* request("GET", `/v1/admin/people/${personId}`, { key: adminKey })
        const erased = yield* request("DELETE", `/v1/admin/people/${personId}`, { key: adminKey })
        const gone = yield* request("GET", `/v1/admin/people/${personId}`, { key: adminKey })
        const unknown = yield* request("DELETE", `/v1/admin/people/${Crypto.randomUUID()}`, { key: adminKey })

        expect(read.body.status).toBe("active")
        expect(read.body.consent.purposes).toEqual(["venue-admission"])
        expect(erased.body.status).toBe("erased")
        expect([gone.status, gone.body.code]).toEqual([410, "PersonErased"])
        expect([unknown.status, unknown.body.code]).toEqual([404, "PersonNotFound"])
      }))
  })
})
