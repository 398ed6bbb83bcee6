import { Effect } from "effect"
import * as Crypto from "node:crypto"
import { ProviderSim } from "../../src/sim/ProviderSim.js"
import { eventually } from "./Eventually.js"
import { request } from "./Http.js"
import { createEvent, createVenueAndDevice, enroll, type TestDevice } from "./Identity.js"
import { axis } from "./Matching.js"
import { adminKey } from "./Server.js"
import { mapEvent } from "./Ticketing.js"

/**
 * Fixtures for admission over HTTP: an event whose tickets come from the provider simulator,
 * ticket holders enrolled with one template each along an axis of the four-dimension test model
 * (so a probe along the same axis identifies them, and nobody else), and gate scans.
 */

export const model = "test-4d@1"

export interface Holder {
  readonly personId: string
  /** A probe that identifies this person. */
  readonly face: ReadonlyArray<number>
  readonly secret: string
}

export interface Scene {
  readonly gate: TestDevice
  readonly eventId: string
  readonly slug: string
  readonly holders: ReadonlyArray<Holder>
  /** Secrets of synced tickets nobody holds, for ticket scans. */
  readonly spare: ReadonlyArray<string>
}

/** One gate scan through `POST /v1/admissions`; a fresh Idempotency-Key unless `idempotencyKey` is given. */
export const postScan = (
  device: { readonly key: string },
  body: unknown,
  idempotencyKey: string = Crypto.randomUUID()
) => request("POST", "/v1/admissions", { key: device.key, body, headers: { "idempotency-key": idempotencyKey } })

/** The body of a scan, entry by default, with a fresh nonce. */
export const scanBody = (
  eventId: string,
  target: { readonly probe: ReadonlyArray<number> } | { readonly ticket: string },
  overrides: Record<string, unknown> = {}
) => ({
  nonce: Crypto.randomUUID(),
  eventId,
  gate: "north",
  direction: "entry",
  ...("probe" in target
    ? { probe: { modelId: model, vector: target.probe } }
    : { ticket: { reference: target.ticket } }),
  deviceTime: "2024-06-01T19:00:00.000Z",
  offline: false,
  ...overrides
})

export const identify = (device: TestDevice, eventId: string, vector: ReadonlyArray<number>) =>
  request("POST", "/v1/identify", { key: device.key, body: { eventId, probe: { modelId: model, vector } } })

/**
 * A venue with a gate device and an event mapped to a fresh provider event that sells a ticket
 * to each of `holders` people (at most four) and `spare` tickets to nobody; the holders are
 * enrolled with the ticket's holder reference, so the sync links their tickets, and each can be
 * identified.
 */
export const scene = (
  options: { readonly holders?: number; readonly spare?: number; readonly gate?: TestDevice } = {}
) =>
  Effect.gen(function*() {
    const sim = yield* ProviderSim
    const gate = options.gate ?? (yield* createVenueAndDevice)
    const { eventId } = yield* createEvent(gate.venueId)
    const slug = `ev-${Crypto.randomUUID().slice(0, 8)}`
    sim.addEvent({ slug })
    const refs = Array.from({ length: options.holders ?? 1 }, () => `cust-${Crypto.randomUUID().slice(0, 8)}`)
    const sold = refs.map((holderReference) => sim.addTicket(slug, { holderReference }))
    const spare = Array.from({ length: options.spare ?? 0 }, () => sim.addTicket(slug).secret)
    const holders = yield* Effect.forEach(refs, (externalRef, i) =>
      Effect.gen(function*() {
        const face = axis(4, i)
        const person = yield* enroll(gate, { externalRef, vectors: [face] })
        return { personId: person.personId, face, secret: sold[i]!.secret }
      }))
    // The first sync links the tickets to the people enrolled under their holder reference.
    yield* mapEvent(eventId, slug)
    for (const h of holders) {
      yield* eventually(Effect.map(
        identify(gate, eventId, h.face),
        (r) => r.body?.candidates?.[0]?.personId === h.personId
      ))
    }
    return { gate, eventId, slug, holders, spare } satisfies Scene
  })

/** The event's admissions through the listing endpoint, as the admin unless `key` says otherwise. */
export const listAdmissions = (eventId: string, query = "", key = adminKey) =>
  request("GET", `/v1/events/${eventId}/admissions?limit=1000${query}`, { key })
