import { SqlClient } from "@effect/sql"
import { Effect, Layer, Option, Redacted } from "effect"
import * as Crypto from "node:crypto"
import type { AppConfigShape } from "../../src/layers/Config.js"
import { ProviderSim, type SimOptions } from "../../src/sim/ProviderSim.js"
import { eventually } from "./Eventually.js"
import { request } from "./Http.js"
import { simToken } from "./Provider.js"
import { adminKey, TestServerLive } from "./Server.js"

/**
 * The whole service aimed at a provider simulator that the layer starts first. The scheduled sync
 * waits an hour between runs (tests run on the TestClock, so it waits until a test adjusts the
 * clock) and retries are off: tests trigger syncs through the admin endpoint.
 */
export const TicketingServerLive = (simOptions: SimOptions = {}, overrides: Partial<AppConfigShape> = {}) =>
  Layer.unwrapEffect(Effect.map(ProviderSim, (sim) =>
    TestServerLive({
      ticketProviderUrl: Option.some(new URL(sim.baseUrl)),
      ticketProviderToken: Option.some(Redacted.make(simToken)),
      ticketProviderTimeoutMs: 5000,
      ticketProviderRetries: 0,
      ticketProviderBreakerFailures: 3,
      ticketProviderBreakerOpenMs: 30_000,
      ticketProviderBreakerProbes: 2,
      ticketSyncIntervalMs: 3_600_000,
      ticketSyncPageSize: 10,
      ticketSyncOverlapMs: 1000,
      ...overrides
    }))).pipe(Layer.provideMerge(ProviderSim.layer({ token: simToken, events: 0, ...simOptions })))

/**
 * A person as enrollment leaves one, written directly: ticketing only reads people's venue,
 * external reference and consent.
 */
export const insertPerson = (venueId: string, externalRef: string | null, consent: "active" | "withdrawn" = "active") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const id = Crypto.randomUUID()
    yield* sql`
      INSERT INTO people (id, venue_id, external_ref, consent_state)
      VALUES (${id}, ${venueId}, ${externalRef}, ${consent})
    `
    return id
  }).pipe(Effect.orDie)

/** Whether the person is in the event's gallery (`event_gallery`). */
export const inGallery = (eventId: string, personId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql`SELECT 1 FROM event_gallery WHERE event_id = ${eventId} AND person_id = ${personId}`
    return rows.length > 0
  }).pipe(Effect.orDie)

/**
 * Maps the event to a provider event and waits for the sync that mapping starts to finish, so
 * that later syncs a test triggers are the only ones running.
 */
export const mapEvent = (eventId: string, providerEvent: string) =>
  Effect.gen(function*() {
    const mapped = yield* request("PUT", `/v1/admin/events/${eventId}/provider`, {
      key: adminKey,
      body: { providerEvent }
    })
    if (mapped.status !== 200) return yield* Effect.dieMessage(`map event: ${mapped.status} ${mapped.text}`)
    yield* eventually(Effect.map(
      request("GET", `/v1/admin/events/${eventId}/provider`, { key: adminKey }),
      (r) => r.body?.lastSuccessAt !== null || r.body?.lastError !== null
    ))
    return mapped.body
  })

export const syncNow = (eventId: string) =>
  request("POST", `/v1/admin/events/${eventId}/ticket-sync`, { key: adminKey })

/** Every ticket of the event, through the API. */
export const listTickets = (eventId: string, key = adminKey) =>
  Effect.map(request("GET", `/v1/events/${eventId}/tickets?limit=10000`, { key }), (r) => r.body?.tickets as Array<any>)
