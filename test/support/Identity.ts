import { Effect } from "effect"
import * as Crypto from "node:crypto"
import { request } from "./Http.js"
import { adminKey } from "./Server.js"

/**
 * Fixtures for tests that need venues, devices, events and enrolled people. Every helper goes
 * through the public HTTP API of the test server, so it exercises the same paths as devices.
 */

export interface TestDevice {
  readonly venueId: string
  readonly deviceId: string
  /** The device's bearer key. */
  readonly key: string
}

const expectStatus = (what: string, expected: number) => (reply: { status: number; text: string; body: any }) =>
  reply.status === expected
    ? Effect.succeed(reply.body)
    : Effect.dieMessage(`${what}: expected ${expected}, got ${reply.status} ${reply.text}`)

/** Creates a venue (admin). */
export const createVenue = (name = `venue ${Crypto.randomUUID().slice(0, 8)}`) =>
  request("POST", "/v1/admin/venues", { key: adminKey, body: { name } }).pipe(
    Effect.flatMap(expectStatus("create venue", 201)),
    Effect.map((venue): { readonly venueId: string } => venue)
  )

/** Creates a device of a venue and returns its key. */
export const createDevice = (venueId: string, name = "gate") =>
  request("POST", "/v1/admin/devices", { key: adminKey, body: { venueId, name } }).pipe(
    Effect.flatMap(expectStatus("create device", 201)),
    Effect.map((created): TestDevice => ({ venueId, deviceId: created.device.deviceId, key: created.key.apiKey }))
  )

/** A new venue with one device. */
export const createVenueAndDevice = Effect.flatMap(createVenue(), (venue) => createDevice(venue.venueId))

/** Creates an event of a venue, running from an hour ago for a day unless told otherwise. */
export const createEvent = (
  venueId: string,
  options: { readonly name?: string; readonly startsAt?: Date; readonly endsAt?: Date } = {}
) => {
  const startsAt = options.startsAt ?? new Date(Date.now() - 3_600_000)
  const endsAt = options.endsAt ?? new Date(startsAt.getTime() + 86_400_000)
  return request("POST", "/v1/admin/events", {
    key: adminKey,
    body: { venueId, name: options.name ?? "concert", startsAt: startsAt.toISOString(), endsAt: endsAt.toISOString() }
  }).pipe(
    Effect.flatMap(expectStatus("create event", 201)),
    Effect.map((event): { readonly eventId: string; readonly venueId: string } => event)
  )
}

/** Adds an enrolled person to an event's guests (admin), so the event's gallery holds them. */
export const addGuest = (eventId: string, personId: string) =>
  request("PUT", `/v1/admin/events/${eventId}/guests/${personId}`, { key: adminKey }).pipe(
    Effect.flatMap(expectStatus("add guest", 200))
  )

/** A consent record as devices send it. */
export const consentRecord = {
  purposes: ["venue-admission"],
  noticeVersion: "2024-05",
  jurisdiction: "EU-GDPR",
  method: "kiosk-signature",
  givenAt: "2024-06-01T18:00:00.000Z"
}

/** A random unit-free vector for a model of `dimension` values (not normalised: the service does that). */
export const randomVector = (dimension = 4) => Array.from({ length: dimension }, () => Math.random() * 2 - 1)

export interface EnrollOptions {
  readonly personId?: string
  readonly externalRef?: string
  readonly modelId?: string
  readonly vectors?: ReadonlyArray<ReadonlyArray<number>>
  readonly idempotencyKey?: string
}

/**
 * Enrolls a person through `POST /v1/people` as `device` (by default one random template of
 * the four-dimension test model) and returns the person as answered.
 */
export const enroll = (device: TestDevice, options: EnrollOptions = {}) =>
  request("POST", "/v1/people", {
    key: device.key,
    headers: { "idempotency-key": options.idempotencyKey ?? Crypto.randomUUID() },
    body: {
      personId: options.personId ?? Crypto.randomUUID(),
      ...(options.externalRef === undefined ? {} : { externalRef: options.externalRef }),
      consent: consentRecord,
      templates: (options.vectors ?? [randomVector()]).map((vector) => ({
        modelId: options.modelId ?? "test-4d@1",
        vector
      }))
    }
  }).pipe(
    Effect.flatMap(expectStatus("enroll", 201)),
    Effect.map((person): { readonly personId: string; readonly venueId: string; readonly [k: string]: any } => person)
  )

/** A venue with a device and an event, and `count` people enrolled and added to the event's guests. */
export const eventWithGuests = (count: number, options: Omit<EnrollOptions, "personId" | "idempotencyKey"> = {}) =>
  Effect.gen(function*() {
    const device = yield* createVenueAndDevice
    const event = yield* createEvent(device.venueId)
    const people = yield* Effect.forEach(
      Array.from({ length: count }),
      () => Effect.tap(enroll(device, options), (person) => addGuest(event.eventId, person.personId))
    )
    return { device, event, people }
  })
