import { Effect, Layer, Option } from "effect"
import { AdmissionDirectory, IdentificationUnavailable, ProbeRejected, type TicketView } from "./Admissions.js"
import { auditEntry } from "./AttemptLog.js"
import { Enrollment } from "./Enrollment.js"
import { Matching } from "./Matching.js"
import { type Ticket, Tickets } from "./Tickets.js"
import { Venues } from "./Venues.js"

const view = (ticket: Ticket): TicketView => ({
  ticketId: ticket.ticketId,
  eventId: ticket.eventId,
  valid: ticket.status === "valid"
})

/**
 * Admission's view of the other components, from their services: events and their venue
 * (identity), synced tickets and their links (ticketing, from the database only) and
 * identification (matching, in memory). Nothing here reaches the ticketing provider, so a provider
 * outage cannot reach the gate.
 */
export const layer = Layer.effect(
  AdmissionDirectory,
  Effect.gen(function*() {
    const venues = yield* Venues
    const tickets = yield* Tickets
    const matching = yield* Matching
    const enrollment = yield* Enrollment

    return {
      eventVenue: (eventId) =>
        venues.getEvent(eventId).pipe(
          Effect.map((event) => Option.some(event.venueId)),
          Effect.catchTag("EventNotFound", () => Effect.succeed(Option.none<string>()))
        ),
      ticketByReference: (eventId, reference) => Effect.map(tickets.byReference(eventId, reference), Option.map(view)),
      ticketsOfPerson: (eventId, personId) => Effect.map(tickets.ofPerson(eventId, personId), (all) => all.map(view)),
      identify: (requester, eventId, probe) =>
        matching.search(
          { deviceId: requester.deviceId, venueId: requester.venueId },
          { eventId, probe, topK: 1 }
        ).pipe(
          Effect.map(({ attempt, identification }) => ({
            modelId: identification.modelId,
            threshold: identification.threshold,
            attemptId: identification.attemptId,
            attempt: auditEntry(attempt),
            match: Option.map(
              Option.fromNullable(identification.candidates[0]),
              (best) => ({ personId: best.personId, score: best.score })
            )
          })),
          Effect.catchTags({
            ProbeInvalid: (e) => Effect.fail(new ProbeRejected({ detail: e.message })),
            MatchingUnavailable: (e) => Effect.fail(new IdentificationUnavailable({ detail: e.detail }))
          })
        ),
      recordInteraction: (personId) => enrollment.recordInteraction([personId])
    }
  })
)
