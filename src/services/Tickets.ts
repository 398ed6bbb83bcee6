import { SqlClient, type Statement } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Option } from "effect"
import { encodeGalleryChange, galleryChannel } from "../domain/GalleryChange.js"
import { EventNotFound, PersonNotFound, VenueMismatch } from "../domain/Identity.js"
import {
  EventAlreadyMapped,
  ProviderEventTaken,
  type ProviderTicket,
  TicketAlreadyLinked,
  TicketNotFound,
  TicketNotValid,
  type TicketStatus
} from "../domain/Ticket.js"
import { Audit } from "./Audit.js"

export interface EventMapping {
  readonly eventId: string
  readonly venueId: string
  readonly providerEvent: string
  readonly createdAt: Date
  /** The last `(modified, id)` of the provider's feed applied; null before the first ticket. */
  readonly cursorModified: Date | null
  readonly cursorProviderId: number | null
  readonly lastAttemptAt: Date | null
  readonly lastSuccessAt: Date | null
  readonly lastError: string | null
}

export type LinkSource = "holder_reference" | "claim"

export interface TicketLink {
  readonly personId: string
  readonly source: LinkSource
  readonly linkedAt: Date
}

export interface Ticket {
  readonly ticketId: string
  readonly eventId: string
  readonly providerEvent: string
  readonly providerTicketId: number
  readonly order: string
  readonly secret: string
  readonly holderReference: string | null
  readonly status: TicketStatus
  readonly providerModified: Date
  readonly providerVersion: number
  readonly updatedAt: Date
  /** The person the ticket admits, while it is valid and linked. */
  readonly link: TicketLink | null
}

/** What applying one page of the provider's feed did. */
export interface Applied {
  readonly inserted: number
  readonly updated: number
  /** Snapshots not newer than the stored ticket: duplicates and late arrivals, left alone. */
  readonly stale: number
  readonly linked: number
  readonly revoked: number
}

export interface TicketsShape {
  /**
   * Makes `providerEvent` feed `eventId`. Mapping again to the same provider event changes
   * nothing; another provider event, or one that feeds another event, is a conflict.
   */
  readonly map: (
    eventId: string,
    providerEvent: string
  ) => Effect.Effect<EventMapping, EventNotFound | EventAlreadyMapped | ProviderEventTaken | SqlError>
  readonly mapping: (eventId: string) => Effect.Effect<Option.Option<EventMapping>, SqlError>
  readonly mappedEvents: Effect.Effect<ReadonlyArray<string>, SqlError>
  /**
   * Applies provider snapshots to the event's tickets: each only if newer than the stored one
   * (`(modified, version)`), so replays and out-of-order pages change nothing. A ticket that stops
   * being valid, or changes holder, loses its link; valid tickets are linked to the person of the
   * event's venue whose external reference equals the holder reference. Joins the caller's
   * transaction when there is one.
   */
  readonly apply: (
    eventId: string,
    providerEvent: string,
    tickets: ReadonlyArray<ProviderTicket>
  ) => Effect.Effect<Applied, SqlError>
  /**
   * Links valid, unlinked tickets whose holder reference equals the person's external reference,
   * at every event of the person's venue. Enrollment calls it in its transaction when a person
   * gets an external reference; the sync also runs it per event as a backstop. Returns how many
   * tickets it linked.
   */
  readonly linkHolder: (personId: string) => Effect.Effect<number, SqlError>
  /** `linkHolder` for every person of the event's venue at once. */
  readonly linkHolders: (eventId: string) => Effect.Effect<number, SqlError>
  /**
   * An explicit claim: links a valid ticket to a person of the event's venue. Claiming again for
   * the same person answers the existing link; a ticket linked to someone else is a conflict.
   */
  readonly claim: (
    eventId: string,
    ticketId: string,
    personId: string
  ) => Effect.Effect<
    TicketLink,
    TicketNotFound | TicketNotValid | TicketAlreadyLinked | PersonNotFound | VenueMismatch | SqlError
  >
  /** Removes a ticket's link (kept as history); automatic linking does not bring it back. */
  readonly unlink: (eventId: string, ticketId: string) => Effect.Effect<void, TicketNotFound | SqlError>
  /** The event's tickets in provider order, after `afterProviderId`, at most `limit`. */
  readonly list: (
    eventId: string,
    options?: { readonly limit?: number; readonly afterProviderId?: number }
  ) => Effect.Effect<ReadonlyArray<Ticket>, SqlError>
  /**
   * The ticket whose secret a gate scanned, of this event first, else of another event of the
   * same venue; a ticket of another venue is not found, so a scan learns nothing about it.
   */
  readonly byReference: (eventId: string, secret: string) => Effect.Effect<Option.Option<Ticket>, SqlError>
  /** One synced ticket by its id. */
  readonly get: (ticketId: string) => Effect.Effect<Option.Option<Ticket>, SqlError>
  /** The event's tickets linked to the person now, valid or not. */
  readonly ofPerson: (eventId: string, personId: string) => Effect.Effect<ReadonlyArray<Ticket>, SqlError>
}

/** A ticket as selected: its link's columns flat, null without a link. */
interface TicketRow extends Omit<Ticket, "link"> {
  readonly personId: string | null
  readonly source: LinkSource | null
  readonly linkedAt: Date | null
}

const toTicket = ({ linkedAt, personId, source, ...t }: TicketRow): Ticket => ({
  ...t,
  link: personId === null ? null : { personId, source: source!, linkedAt: linkedAt! }
})

/** Keeps the newest snapshot of each ticket of a batch, so one statement never touches a row twice. */
const newestPerTicket = (tickets: ReadonlyArray<ProviderTicket>) => {
  const newest = new Map<number, ProviderTicket>()
  for (const t of tickets) {
    const seen = newest.get(t.providerId)
    if (
      seen === undefined || t.modified.getTime() > seen.modified.getTime() ||
      (t.modified.getTime() === seen.modified.getTime() && t.version > seen.version)
    ) newest.set(t.providerId, t)
  }
  return [...newest.values()]
}

/** Synced tickets, their links to people, and which provider event feeds each event. */
export class Tickets extends Context.Tag("gatehouse/Tickets")<Tickets, TicketsShape>() {
  static readonly layer = Layer.effect(
    Tickets,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const audit = yield* Audit

      const ticketColumns = sql`
        t.id AS "ticketId", t.event_id AS "eventId", t.provider_event AS "providerEvent",
        t.provider_ticket_id AS "providerTicketId", t.provider_order AS "order", t.secret,
        t.holder_reference AS "holderReference", t.status, t.provider_modified AS "providerModified",
        t.provider_version AS "providerVersion", t.updated_at AS "updatedAt",
        l.person_id AS "personId", l.source, l.linked_at AS "linkedAt"
      `
      const fromTickets = sql`tickets t LEFT JOIN ticket_links l ON l.ticket_id = t.id AND l.revoked_at IS NULL`

      /** Tells matching which memberships changed; sent at commit, dropped on rollback. */
      const notify = (changes: ReadonlyArray<{ readonly eventId: string; readonly personId: string }>) =>
        changes.length === 0 ? Effect.void : Effect.asVoid(sql`
          SELECT pg_notify(${galleryChannel}, m)
          FROM unnest(${
          changes.map((c) => encodeGalleryChange({ kind: "membership", eventId: c.eventId, personId: c.personId }))
        }::text[]) AS m
        `)

      const mappingQuery = (where: Statement.Fragment) =>
        sql<EventMapping>`
          SELECT m.event_id AS "eventId", e.venue_id AS "venueId", m.provider_event AS "providerEvent",
                 m.created_at AS "createdAt", m.cursor_modified AS "cursorModified",
                 m.cursor_id AS "cursorProviderId", m.last_attempt_at AS "lastAttemptAt",
                 m.last_success_at AS "lastSuccessAt", m.last_error AS "lastError"
          FROM event_provider_links m JOIN events e ON e.id = m.event_id
          WHERE ${where}
        `

      const mapping = (eventId: string) =>
        Effect.map(mappingQuery(sql`m.event_id = ${eventId}`), (rows) => Option.fromNullable(rows[0]))

      const map = (eventId: string, providerEvent: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const events = yield* sql<{ id: string }>`SELECT id FROM events WHERE id = ${eventId} FOR SHARE`
          if (events[0] === undefined) return yield* new EventNotFound({ id: eventId })
          const inserted = yield* sql<{ eventId: string }>`
            INSERT INTO event_provider_links (event_id, provider_event) VALUES (${eventId}, ${providerEvent})
            ON CONFLICT DO NOTHING
            RETURNING event_id AS "eventId"
          `
          const current = yield* mapping(eventId)
          if (Option.isNone(current)) {
            // The provider event feeds another event (the only other conflict left).
            return yield* new ProviderEventTaken({ providerEvent })
          }
          if (current.value.providerEvent !== providerEvent) {
            return yield* new EventAlreadyMapped({ eventId, providerEvent: current.value.providerEvent })
          }
          if (inserted.length > 0) {
            yield* audit.record({
              action: "event.provider_mapped",
              venueId: current.value.venueId,
              eventId,
              details: { providerEvent }
            })
          }
          return current.value
        })).pipe(Effect.withSpan("Tickets.map"))

      const mappedEvents = Effect.map(
        sql<{ eventId: string }>`SELECT event_id AS "eventId" FROM event_provider_links ORDER BY created_at, event_id`,
        (rows) => rows.map((r) => r.eventId)
      )

      /** Links valid unlinked tickets to people of the venue by holder reference; `where` narrows the tickets. */
      const autoLink = (where: Statement.Fragment) =>
        Effect.gen(function*() {
          const linked = yield* sql<{ eventId: string; personId: string }>`
            INSERT INTO ticket_links (ticket_id, event_id, person_id, source)
            SELECT t.id, t.event_id, p.id, 'holder_reference'
            FROM tickets t
            JOIN events e ON e.id = t.event_id
            JOIN people p ON p.venue_id = e.venue_id AND p.external_ref = t.holder_reference
            WHERE ${where}
              AND t.status = 'valid'
              AND t.holder_reference IS NOT NULL
              AND NOT EXISTS (
                SELECT 1 FROM ticket_links l
                WHERE l.ticket_id = t.id AND (l.revoked_at IS NULL OR l.revoked_reason = 'unlinked')
              )
            ON CONFLICT (ticket_id) WHERE revoked_at IS NULL DO NOTHING
            RETURNING event_id AS "eventId", person_id AS "personId"
          `
          yield* notify(linked)
          return linked.length
        })

      const apply = (eventId: string, providerEvent: string, batch: ReadonlyArray<ProviderTicket>) =>
        sql.withTransaction(Effect.gen(function*() {
          const tickets = newestPerTicket(batch)
          if (tickets.length === 0) return { inserted: 0, updated: 0, stale: 0, linked: 0, revoked: 0 }
          const ids = tickets.map((t) => t.providerId)

          // The stored rows, locked: their holder decides which links the new snapshots revoke.
          const before = yield* sql<{ providerTicketId: number; holderReference: string | null }>`
            SELECT provider_ticket_id AS "providerTicketId", holder_reference AS "holderReference"
            FROM tickets
            WHERE event_id = ${eventId} AND provider_ticket_id = ANY(${ids}::bigint[])
            ORDER BY provider_ticket_id
            FOR UPDATE
          `
          const holderBefore = new Map(before.map((r) => [r.providerTicketId, r.holderReference]))

          const written = yield* sql<{ ticketId: string; providerTicketId: number; inserted: boolean }>`
            INSERT INTO tickets (
              id, event_id, provider_event, provider_ticket_id, provider_order, secret, holder_reference,
              status, provider_modified, provider_version
            )
            SELECT gen_random_uuid(), ${eventId}, ${providerEvent}, i.*
            FROM unnest(
              ${ids}::bigint[],
              ${tickets.map((t) => t.order)}::text[],
              ${tickets.map((t) => t.secret)}::text[],
              ${tickets.map((t) => t.holderReference)}::text[],
              ${tickets.map((t) => t.status)}::text[],
              ${tickets.map((t) => t.modified.toISOString())}::timestamptz[],
              ${tickets.map((t) => t.version)}::bigint[]
            ) AS i
            ON CONFLICT (event_id, provider_ticket_id) DO UPDATE SET
              provider_order = EXCLUDED.provider_order,
              secret = EXCLUDED.secret,
              holder_reference = EXCLUDED.holder_reference,
              status = EXCLUDED.status,
              provider_modified = EXCLUDED.provider_modified,
              provider_version = EXCLUDED.provider_version,
              updated_at = now()
            WHERE (tickets.provider_modified, tickets.provider_version)
                < (EXCLUDED.provider_modified, EXCLUDED.provider_version)
            RETURNING id AS "ticketId", provider_ticket_id AS "providerTicketId", (xmax = 0) AS inserted
          `
          const updated = written.filter((w) => !w.inserted)
          const byId = new Map(tickets.map((t) => [t.providerId, t]))
          const losing = updated.filter((w) => {
            const t = byId.get(w.providerTicketId)!
            return t.status !== "valid" || t.holderReference !== holderBefore.get(w.providerTicketId)
          })

          const revoked = losing.length === 0 ? [] : yield* sql<{ eventId: string; personId: string }>`
            UPDATE ticket_links l
            SET revoked_at = now(),
                revoked_reason = CASE WHEN t.status = 'valid' THEN 'holder_changed' ELSE t.status END
            FROM tickets t
            WHERE t.id = l.ticket_id AND l.revoked_at IS NULL AND l.ticket_id = ANY(${
            losing.map((w) => w.ticketId)
          }::uuid[])
            RETURNING l.event_id AS "eventId", l.person_id AS "personId"
          `
          yield* notify(revoked)
          const linked = written.length === 0
            ? 0
            : yield* autoLink(sql`t.id = ANY(${written.map((w) => w.ticketId)}::uuid[])`)

          return {
            inserted: written.length - updated.length,
            updated: updated.length,
            stale: tickets.length - written.length + (batch.length - tickets.length),
            linked,
            revoked: revoked.length
          }
        })).pipe(Effect.withSpan("Tickets.apply"))

      const linkHolder = (personId: string) =>
        autoLink(sql`p.id = ${personId}`).pipe(Effect.withSpan("Tickets.linkHolder"))

      const linkHolders = (eventId: string) =>
        autoLink(sql`t.event_id = ${eventId}`).pipe(Effect.withSpan("Tickets.linkHolders"))

      const activeLink = (ticketId: string) =>
        Effect.map(
          sql<TicketLink>`
            SELECT person_id AS "personId", source, linked_at AS "linkedAt"
            FROM ticket_links WHERE ticket_id = ${ticketId} AND revoked_at IS NULL
          `,
          (rows) => Option.fromNullable(rows[0])
        )

      const lockTicket = (eventId: string, ticketId: string) =>
        Effect.flatMap(
          sql<{ status: TicketStatus; venueId: string }>`
            SELECT t.status, e.venue_id AS "venueId"
            FROM tickets t JOIN events e ON e.id = t.event_id
            WHERE t.id = ${ticketId} AND t.event_id = ${eventId}
            FOR UPDATE OF t
          `,
          (rows) => rows[0] === undefined ? Effect.fail(new TicketNotFound({ id: ticketId })) : Effect.succeed(rows[0])
        )

      const claim = (eventId: string, ticketId: string, personId: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const ticket = yield* lockTicket(eventId, ticketId)
          if (ticket.status !== "valid") return yield* new TicketNotValid({ ticketId, status: ticket.status })
          const people = yield* sql<{ venueId: string }>`
            SELECT venue_id AS "venueId" FROM people WHERE id = ${personId} FOR SHARE
          `
          if (people[0] === undefined) return yield* new PersonNotFound({ id: personId })
          if (people[0].venueId !== ticket.venueId) {
            return yield* new VenueMismatch({ detail: "the person is enrolled at another venue than the event's" })
          }
          const inserted = yield* sql<TicketLink>`
            INSERT INTO ticket_links (ticket_id, event_id, person_id, source)
            VALUES (${ticketId}, ${eventId}, ${personId}, 'claim')
            ON CONFLICT (ticket_id) WHERE revoked_at IS NULL DO NOTHING
            RETURNING person_id AS "personId", source, linked_at AS "linkedAt"
          `
          if (inserted[0] !== undefined) {
            yield* notify([{ eventId, personId }])
            yield* audit.record({
              action: "ticket.claimed",
              venueId: ticket.venueId,
              eventId,
              personId,
              details: { ticketId }
            })
            return inserted[0]
          }
          const existing = yield* activeLink(ticketId)
          if (Option.isSome(existing) && existing.value.personId === personId) return existing.value
          return yield* new TicketAlreadyLinked({ ticketId })
        })).pipe(Effect.withSpan("Tickets.claim"))

      const unlink = (eventId: string, ticketId: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const ticket = yield* lockTicket(eventId, ticketId)
          const revoked = yield* sql<{ eventId: string; personId: string }>`
            UPDATE ticket_links SET revoked_at = now(), revoked_reason = 'unlinked'
            WHERE ticket_id = ${ticketId} AND revoked_at IS NULL
            RETURNING event_id AS "eventId", person_id AS "personId"
          `
          yield* notify(revoked)
          for (const r of revoked) {
            yield* audit.record({
              action: "ticket.unlinked",
              venueId: ticket.venueId,
              eventId,
              personId: r.personId,
              details: { ticketId }
            })
          }
        })).pipe(Effect.withSpan("Tickets.unlink"))

      const list = (eventId: string, options: { readonly limit?: number; readonly afterProviderId?: number } = {}) =>
        Effect.map(
          sql<TicketRow>`
            SELECT ${ticketColumns} FROM ${fromTickets}
            WHERE t.event_id = ${eventId} AND t.provider_ticket_id > ${options.afterProviderId ?? -1}
            ORDER BY t.provider_ticket_id
            LIMIT ${options.limit ?? 1000}
          `,
          (rows) => rows.map(toTicket)
        )

      const byReference = (eventId: string, secret: string) =>
        Effect.map(
          sql<TicketRow>`
            SELECT ${ticketColumns} FROM ${fromTickets}
            WHERE t.secret = ${secret}
              AND t.event_id IN (
                SELECT e.id FROM events e
                WHERE e.venue_id = (SELECT venue_id FROM events WHERE id = ${eventId})
              )
            ORDER BY (t.event_id = ${eventId}) DESC, t.updated_at DESC
            LIMIT 1
          `,
          (rows) => Option.map(Option.fromNullable(rows[0]), toTicket)
        )

      const get = (ticketId: string) =>
        Effect.map(
          sql<TicketRow>`SELECT ${ticketColumns} FROM ${fromTickets} WHERE t.id = ${ticketId}`,
          (rows) => Option.map(Option.fromNullable(rows[0]), toTicket)
        )

      const ofPerson = (eventId: string, personId: string) =>
        Effect.map(
          sql<TicketRow>`
            SELECT ${ticketColumns} FROM ${fromTickets}
            WHERE t.event_id = ${eventId} AND l.person_id = ${personId}
            ORDER BY t.provider_ticket_id
          `,
          (rows) => rows.map(toTicket)
        )

      return {
        map,
        mapping,
        mappedEvents,
        apply,
        linkHolder,
        linkHolders,
        claim,
        unlink,
        list,
        byReference,
        get,
        ofPerson
      } satisfies TicketsShape
    })
  )
}
