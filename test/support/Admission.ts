import { Effect, Layer, Option } from "effect"
import * as Crypto from "node:crypto"
import type { Direction } from "../../src/domain/CheckIn.js"
import {
  type Admission,
  AdmissionDirectory,
  type Identification,
  type Probe,
  type Scan,
  type TicketView
} from "../../src/services/Admissions.js"

/**
 * The other components' side of admission, in memory, for tests of the admission service alone:
 * events with their venue, tickets by reference, links and a probe-to-person table. Tests change
 * it freely (cancel a ticket, link another).
 */
export interface DirectoryState {
  readonly events: Map<string, string>
  readonly tickets: Map<string, TicketView>
  readonly links: Map<string, Array<string>>
  /** A probe's first component, rounded, names the person it identifies. */
  readonly faces: Map<number, string>
}

export const emptyDirectory = (): DirectoryState => ({
  events: new Map(),
  tickets: new Map(),
  links: new Map(),
  faces: new Map()
})

export const memoryDirectory = (state: DirectoryState) =>
  Layer.succeed(AdmissionDirectory, {
    eventVenue: (eventId) => Effect.sync(() => Option.fromNullable(state.events.get(eventId))),
    ticketByReference: (_eventId, reference) => Effect.sync(() => Option.fromNullable(state.tickets.get(reference))),
    ticketsOfPerson: (eventId, personId) =>
      Effect.sync(() =>
        (state.links.get(personId) ?? [])
          .flatMap((ref) => Option.toArray(Option.fromNullable(state.tickets.get(ref))))
          .filter((t) => t.eventId === eventId)
      ),
    identify: (_requester, _eventId, probe) =>
      Effect.sync((): Identification => ({
        modelId: probe.modelId,
        threshold: 0.5,
        attemptId: null,
        attempt: null,
        match: Option.map(
          Option.fromNullable(state.faces.get(Math.round(probe.vector[0] ?? -1))),
          (personId) => ({ personId, score: 0.9 })
        )
      })),
    recordInteraction: () => Effect.void
  })

/** A venue, an event of it and `tickets` valid tickets, registered in `state`. */
export const seedEvent = (state: DirectoryState, tickets = 1) => {
  const venueId = Crypto.randomUUID()
  const eventId = Crypto.randomUUID()
  state.events.set(eventId, venueId)
  const references = Array.from({ length: tickets }, () => {
    const reference = `SECRET-${Crypto.randomBytes(6).toString("hex")}`
    state.tickets.set(reference, { ticketId: Crypto.randomUUID(), eventId, valid: true })
    return reference
  })
  return { venueId, eventId, references, deviceId: Crypto.randomUUID() }
}

/** A probe that the memory directory identifies as the person registered under `face`. */
export const probeOf = (face: number): Probe => ({ modelId: "test-model", vector: [face, 0.5, 0.25] })

export const ticketScan = (
  base: { readonly deviceId: string; readonly venueId: string; readonly eventId: string },
  reference: string,
  overrides: Partial<Scan> = {}
): Scan => ({
  ...base,
  nonce: Crypto.randomUUID(),
  gate: "north",
  direction: "entry" as Direction,
  offline: false,
  deviceTime: new Date("2026-06-01T18:00:00Z"),
  target: { _tag: "Ticket", reference },
  ...overrides
})

/** Admissions in decision order, as the list invariant reads them. */
export const history = (admissions: ReadonlyArray<Admission>) =>
  [...admissions].sort((a, b) => a.admissionId - b.admissionId).map((a) => ({
    direction: a.direction,
    outcome: a.outcome
  }))
