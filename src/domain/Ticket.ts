import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** A ticket's state as Gatehouse keeps it; only `valid` admits and keeps a link to a person. */
export const TicketStatus = Schema.Literal("valid", "cancelled", "refunded", "transferred")
export type TicketStatus = typeof TicketStatus.Type

/** One ticket as the provider last described it (a pretix order position). */
export interface ProviderTicket {
  /** The provider's position id; with `modified` it orders the provider's change feed. */
  readonly providerId: number
  readonly order: string
  /** What the ticket's QR code carries; gates may scan it instead of a face. */
  readonly secret: string
  /** The holder's customer reference, matched against people's external references. */
  readonly holderReference: string | null
  readonly status: TicketStatus
  readonly modified: Date
  /** Changes within one timestamp are told apart by version. */
  readonly version: number
}

/** Where the change feed of one provider event was read up to: the last `(modified, id)` applied. */
export interface SyncCursor {
  readonly modified: Date
  readonly providerId: number
}

/** Orders tickets as the provider's feed does: by modification time, then id. */
export const compareFeed = (
  a: { readonly modified: Date; readonly providerId: number },
  b: { readonly modified: Date; readonly providerId: number }
): number => a.modified.getTime() - b.modified.getTime() || a.providerId - b.providerId

/** The later of a cursor and the last ticket of a page. */
export const advance = (cursor: SyncCursor | undefined, page: ReadonlyArray<ProviderTicket>): SyncCursor | undefined =>
  page.reduce<SyncCursor | undefined>(
    (c, t) => c === undefined || compareFeed(t, c) > 0 ? { modified: t.modified, providerId: t.providerId } : c,
    cursor
  )

/**
 * How a sync run goes on after a page that has a `next` link. Re-querying from the page's last
 * timestamp is robust against the page shifts that changes cause under offset pagination, but it
 * cannot get past a page whose tickets all share one timestamp: the same page would come back.
 * Only then the run follows `next`.
 */
export const continuation = (page: ReadonlyArray<ProviderTicket>): "follow-next" | "requery" | "done" => {
  const first = page[0]
  const last = page[page.length - 1]
  if (first === undefined || last === undefined) return "done"
  return first.modified.getTime() === last.modified.getTime() ? "follow-next" : "requery"
}

/** Whether a snapshot is newer than the stored one and so may replace it. */
export const isNewer = (
  incoming: { readonly modified: Date; readonly version: number },
  stored: { readonly modified: Date; readonly version: number }
): boolean =>
  incoming.modified.getTime() > stored.modified.getTime() ||
  (incoming.modified.getTime() === stored.modified.getTime() && incoming.version > stored.version)

/** Unknown ticket, or one of another event or venue than the caller's. */
export class TicketNotFound extends Schema.TaggedError<TicketNotFound>()(
  "TicketNotFound",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `ticket ${this.id} was not found`
  }
}

/** The ticket was cancelled, refunded or transferred: it can no longer be linked to anyone. */
export class TicketNotValid extends Schema.TaggedError<TicketNotValid>()(
  "TicketNotValid",
  { ticketId: Schema.String, status: TicketStatus },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `ticket ${this.ticketId} is ${this.status}`
  }
}

/** The ticket is linked to another person: a ticket admits one person only. */
export class TicketAlreadyLinked extends Schema.TaggedError<TicketAlreadyLinked>()(
  "TicketAlreadyLinked",
  { ticketId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `ticket ${this.ticketId} is already linked to another person; unlink it first`
  }
}

/** The event is already fed by another provider event. */
export class EventAlreadyMapped extends Schema.TaggedError<EventAlreadyMapped>()(
  "EventAlreadyMapped",
  { eventId: Schema.String, providerEvent: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `event ${this.eventId} is already mapped to provider event ${this.providerEvent}`
  }
}

/** The provider event already feeds another Gatehouse event. */
export class ProviderEventTaken extends Schema.TaggedError<ProviderEventTaken>()(
  "ProviderEventTaken",
  { providerEvent: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `provider event ${this.providerEvent} already feeds another event`
  }
}

/** The event has no provider event, so there is nothing to sync. */
export class EventNotMapped extends Schema.TaggedError<EventNotMapped>()(
  "EventNotMapped",
  { eventId: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `event ${this.eventId} is not mapped to a provider event`
  }
}

/** A provider event slug: what pretix-style APIs put in URLs. */
export const ProviderEventSlug = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/),
  Schema.annotations({
    description: "The provider's event slug (letters, digits, '.', '_', '-').",
    examples: ["event-1"]
  })
)
