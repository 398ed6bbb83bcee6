import { HttpApiBuilder } from "@effect/platform"
import { Effect, Option } from "effect"
import { EventNotFound } from "../../domain/Identity.js"
import { EventNotMapped } from "../../domain/Ticket.js"
import type { BreakerState } from "../../services/CircuitBreaker.js"
import { TicketProvider } from "../../services/TicketProvider.js"
import { type EventMapping, Tickets } from "../../services/Tickets.js"
import { TicketSync } from "../../services/TicketSync.js"
import { Venues } from "../../services/Venues.js"
import { GatehouseApi } from "../Api.js"
import { orDieSql } from "../Sql.js"
import { canSee, CurrentViewer } from "../ViewerAuth.js"

const breakerName = (state: BreakerState) =>
  state._tag === "Closed" ? "closed" as const : state._tag === "Open" ? "open" as const : "half-open" as const

export const TicketAdminHandlers = HttpApiBuilder.group(
  GatehouseApi,
  "ticketAdmin",
  (handlers) =>
    Effect.gen(function*() {
      const tickets = yield* Tickets
      const sync = yield* TicketSync
      const provider = yield* TicketProvider

      const show = (m: EventMapping) =>
        Effect.map(provider.breakerState, (state) => ({
          eventId: m.eventId,
          providerEvent: m.providerEvent,
          createdAt: m.createdAt,
          cursor: m.cursorModified === null || m.cursorProviderId === null
            ? null
            : { modified: m.cursorModified, providerTicketId: m.cursorProviderId },
          lastAttemptAt: m.lastAttemptAt,
          lastSuccessAt: m.lastSuccessAt,
          lastError: m.lastError,
          breaker: provider.configured ? breakerName(state) : "unconfigured" as const
        }))

      return handlers
        .handle("mapEvent", ({ path, payload }) =>
          orDieSql(tickets.map(path.eventId, payload.providerEvent)).pipe(
            Effect.tap(() => sync.schedule(path.eventId)),
            Effect.flatMap(show)
          ))
        .handle("getMapping", ({ path }) =>
          orDieSql(tickets.mapping(path.eventId)).pipe(
            Effect.flatMap(Option.match({
              onNone: () => Effect.fail(new EventNotMapped({ eventId: path.eventId })),
              onSome: show
            }))
          ))
        .handle("syncEvent", ({ path }) =>
          orDieSql(sync.syncEvent(path.eventId)).pipe(
            Effect.map(({ cursor: _, ...report }) => report)
          ))
        .handle(
          "linkTicket",
          ({ path, payload }) => orDieSql(tickets.claim(path.eventId, path.ticketId, payload.personId))
        )
        .handle("unlinkTicket", ({ path }) =>
          orDieSql(Effect.as(tickets.unlink(path.eventId, path.ticketId), {
            ticketId: path.ticketId,
            unlinked: true as const
          })))
    })
)

export const TicketsHandlers = HttpApiBuilder.group(GatehouseApi, "tickets", (handlers) =>
  Effect.gen(function*() {
    const tickets = yield* Tickets
    const venues = yield* Venues

    return handlers.handle("listTickets", ({ path, urlParams }) =>
      Effect.gen(function*() {
        const viewer = yield* CurrentViewer
        const event = yield* orDieSql(venues.getEvent(path.eventId))
        if (!canSee(viewer, event.venueId)) return yield* new EventNotFound({ id: path.eventId })
        const limit = urlParams.limit ?? 1000
        const [mapping, page] = yield* orDieSql(Effect.all([
          tickets.mapping(path.eventId),
          tickets.list(path.eventId, {
            limit,
            ...(urlParams.after === undefined ? {} : { afterProviderId: urlParams.after })
          })
        ]))
        return {
          eventId: path.eventId,
          providerEvent: Option.match(mapping, { onNone: () => null, onSome: (m) => m.providerEvent }),
          lastSuccessAt: Option.match(mapping, { onNone: () => null, onSome: (m) => m.lastSuccessAt }),
          tickets: page.map(({ eventId: _e, providerEvent: _p, ...t }) => t),
          next: page.length === limit ? page[page.length - 1]!.providerTicketId : null
        }
      }))
  }))
