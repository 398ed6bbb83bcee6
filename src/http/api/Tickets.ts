import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { EventId, EventNotFound, PersonId, PersonNotFound, VenueMismatch } from "../../domain/Identity.js"
import {
  EventAlreadyMapped,
  EventNotMapped,
  ProviderEventSlug,
  ProviderEventTaken,
  TicketAlreadyLinked,
  TicketNotFound,
  TicketNotValid,
  TicketStatus
} from "../../domain/Ticket.js"
import {
  ProviderRateLimited,
  ProviderRejected,
  ProviderResponseMalformed,
  ProviderUnavailable
} from "../../services/TicketProvider.js"
import { AdminAuth } from "../Security.js"
import { ViewerAuth } from "../ViewerAuth.js"

export const TicketLink = Schema.Struct({
  personId: Schema.UUID,
  source: Schema.Literal("holder_reference", "claim").annotations({
    description:
      "holder_reference: the ticket's holder reference equals the person's external reference; claim: linked explicitly."
  }),
  linkedAt: Schema.Date
}).annotations({ identifier: "TicketLink" })

export const Ticket = Schema.Struct({
  ticketId: Schema.UUID,
  providerTicketId: Schema.Number,
  order: Schema.String,
  secret: Schema.String.annotations({ description: "What the ticket's QR code carries; a gate may scan it." }),
  holderReference: Schema.NullOr(Schema.String),
  status: TicketStatus,
  providerModified: Schema.Date,
  providerVersion: Schema.Number,
  updatedAt: Schema.Date,
  link: Schema.NullOr(TicketLink).annotations({ description: "The person the ticket admits; null when unlinked." })
}).annotations({ identifier: "Ticket" })

export const ProviderMapping = Schema.Struct({
  eventId: Schema.UUID,
  providerEvent: Schema.String,
  createdAt: Schema.Date,
  cursor: Schema.NullOr(Schema.Struct({ modified: Schema.Date, providerTicketId: Schema.Number })).annotations({
    description: "The last (modified, id) of the provider's change feed that was applied."
  }),
  lastAttemptAt: Schema.NullOr(Schema.Date),
  lastSuccessAt: Schema.NullOr(Schema.Date),
  lastError: Schema.NullOr(Schema.String),
  breaker: Schema.Literal("closed", "half-open", "open", "unconfigured").annotations({
    description: "State of this instance's circuit breaker in front of the provider."
  })
}).annotations({ identifier: "ProviderMapping" })

export const SyncReport = Schema.Struct({
  eventId: Schema.UUID,
  outcome: Schema.Literal("synced", "busy").annotations({
    description: "busy: another instance is syncing this event right now; nothing was read."
  }),
  pages: Schema.Number,
  inserted: Schema.Number,
  updated: Schema.Number,
  stale: Schema.Number.annotations({ description: "Snapshots not newer than the stored ticket, left alone." }),
  linked: Schema.Number,
  revoked: Schema.Number
}).annotations({ identifier: "SyncReport" })

const eventPath = Schema.Struct({ eventId: EventId })
const ticketPath = Schema.Struct({ eventId: EventId, ticketId: Schema.UUID })

/** Admin: which provider event feeds an event, syncing it now, and explicit ticket claims. */
export class TicketAdminApi extends HttpApiGroup.make("ticketAdmin")
  .add(
    HttpApiEndpoint.put("mapEvent", "/v1/admin/events/:eventId/provider")
      .setPath(eventPath)
      .setPayload(Schema.Struct({ providerEvent: ProviderEventSlug }))
      .addSuccess(ProviderMapping)
      .addError(EventNotFound)
      .addError(EventAlreadyMapped)
      .addError(ProviderEventTaken)
      .annotate(
        OpenApi.Description,
        "Map the event to a provider event; its tickets are then synced on a schedule. Mapping again to the same provider event changes nothing."
      )
  )
  .add(
    HttpApiEndpoint.get("getMapping", "/v1/admin/events/:eventId/provider")
      .setPath(eventPath)
      .addSuccess(ProviderMapping)
      .addError(EventNotMapped)
      .annotate(OpenApi.Description, "The event's provider event and how its sync is doing.")
  )
  .add(
    HttpApiEndpoint.post("syncEvent", "/v1/admin/events/:eventId/ticket-sync")
      .setPath(eventPath)
      .addSuccess(SyncReport)
      .addError(EventNotMapped)
      .addError(ProviderUnavailable)
      .addError(ProviderRejected)
      .addError(ProviderRateLimited)
      .addError(ProviderResponseMalformed)
      .annotate(
        OpenApi.Description,
        "Run the event's ticket sync now and report what it applied. Fails fast with ProviderUnavailable while the breaker is open."
      )
  )
  .add(
    HttpApiEndpoint.put("linkTicket", "/v1/admin/events/:eventId/tickets/:ticketId/link")
      .setPath(ticketPath)
      .setPayload(Schema.Struct({ personId: PersonId }))
      .addSuccess(TicketLink)
      .addError(TicketNotFound)
      .addError(TicketNotValid)
      .addError(TicketAlreadyLinked)
      .addError(PersonNotFound)
      .addError(VenueMismatch)
      .annotate(
        OpenApi.Description,
        "Claim: link a valid ticket to a person of the event's venue. The same claim again answers the existing link; a ticket linked to another person is a conflict."
      )
  )
  .add(
    HttpApiEndpoint.del("unlinkTicket", "/v1/admin/events/:eventId/tickets/:ticketId/link")
      .setPath(ticketPath)
      .addSuccess(Schema.Struct({ ticketId: Schema.UUID, unlinked: Schema.Literal(true) }))
      .addError(TicketNotFound)
      .annotate(
        OpenApi.Description,
        "Remove the ticket's link. Automatic linking by holder reference does not restore it; a claim can."
      )
  )
  .middleware(AdminAuth)
  .annotate(OpenApi.Title, "Admin: ticketing")
{}

/** An event's synced tickets, for devices of the event's venue and for the admin. */
export class TicketsApi extends HttpApiGroup.make("tickets")
  .add(
    HttpApiEndpoint.get("listTickets", "/v1/events/:eventId/tickets")
      .setPath(eventPath)
      .setUrlParams(Schema.Struct({
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 10_000))),
        after: Schema.optional(Schema.NumberFromString.pipe(Schema.int())).annotations({
          description: "Return tickets with a larger providerTicketId (the `next` of the previous answer)."
        })
      }))
      .addSuccess(Schema.Struct({
        eventId: Schema.UUID,
        providerEvent: Schema.NullOr(Schema.String),
        lastSuccessAt: Schema.NullOr(Schema.Date),
        tickets: Schema.Array(Ticket),
        next: Schema.NullOr(Schema.Number)
      }))
      .addError(EventNotFound)
      .annotate(
        OpenApi.Description,
        "Synced tickets and their links, in provider id order (1000 per answer unless `limit` says otherwise). Served from the database: the provider is never called."
      )
  )
  .middleware(ViewerAuth)
  .annotate(OpenApi.Title, "Tickets")
{}
