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
