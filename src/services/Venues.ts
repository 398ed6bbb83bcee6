import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer } from "effect"
import * as Crypto from "node:crypto"
import { encodeGalleryChange, galleryChannel } from "../domain/GalleryChange.js"
import { EventNotFound, EventTimesInvalid, PersonNotFound, VenueMismatch, VenueNotFound } from "../domain/Identity.js"
import { Audit } from "./Audit.js"

export interface Venue {
  readonly venueId: string
  readonly name: string
  readonly createdAt: Date
}

export interface Event {
  readonly eventId: string
  readonly venueId: string
  readonly name: string
  readonly startsAt: Date
  readonly endsAt: Date
  readonly createdAt: Date
}

export interface Guest {
  readonly personId: string
  readonly addedAt: Date
  /** Whether the person is in the event's gallery now (active consent). */
  readonly inGallery: boolean
}

export interface VenuesShape {
  readonly createVenue: (name: string) => Effect.Effect<Venue, SqlError>
  readonly listVenues: Effect.Effect<ReadonlyArray<Venue>, SqlError>
  readonly getVenue: (venueId: string) => Effect.Effect<Venue, VenueNotFound | SqlError>
  readonly createEvent: (input: {
    readonly venueId: string
    readonly name: string
    readonly startsAt: Date
    readonly endsAt: Date
  }) => Effect.Effect<Event, VenueNotFound | EventTimesInvalid | SqlError>
  /** Events of one venue (or all), by start time. */
  readonly listEvents: (venueId?: string) => Effect.Effect<ReadonlyArray<Event>, SqlError>
  /** The event, if it exists and (when `venueId` is given) belongs to that venue. */
  readonly getEvent: (eventId: string, venueId?: string) => Effect.Effect<Event, EventNotFound | SqlError>
  /** Adds a person to an event's guests; adding a present guest changes nothing. */
  readonly addGuest: (
    eventId: string,
    personId: string
  ) => Effect.Effect<Guest, EventNotFound | PersonNotFound | VenueMismatch | SqlError>
  /** Removes a guest; removing an absent one changes nothing. */
  readonly removeGuest: (eventId: string, personId: string) => Effect.Effect<void, EventNotFound | SqlError>
  readonly listGuests: (eventId: string) => Effect.Effect<ReadonlyArray<Guest>, EventNotFound | SqlError>
}

const eventColumns = (sql: SqlClient.SqlClient) =>
  sql`id AS "eventId", venue_id AS "venueId", name, starts_at AS "startsAt", ends_at AS "endsAt",
      created_at AS "createdAt"`

/** Venues, their events and the admin-managed guest lists that feed event galleries. */
export class Venues extends Context.Tag("gatehouse/Venues")<Venues, VenuesShape>() {
  static readonly layer = Layer.effect(
    Venues,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const audit = yield* Audit

      const createVenue = (name: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const id = Crypto.randomUUID()
          const [venue] = yield* sql<Venue>`
            INSERT INTO venues (id, name) VALUES (${id}, ${name})
            RETURNING id AS "venueId", name, created_at AS "createdAt"
          `
          yield* audit.record({ action: "venue.created", venueId: id })
          return venue!
        })).pipe(Effect.withSpan("Venues.createVenue"))

      const listVenues = sql<Venue>`
        SELECT id AS "venueId", name, created_at AS "createdAt" FROM venues ORDER BY created_at, id
      `

      const getVenue = (venueId: string) =>
        Effect.flatMap(
          sql<Venue>`SELECT id AS "venueId", name, created_at AS "createdAt" FROM venues WHERE id = ${venueId}`,
          (rows) => rows[0] === undefined ? Effect.fail(new VenueNotFound({ id: venueId })) : Effect.succeed(rows[0])
        )

      const createEvent = (input: {
        readonly venueId: string
        readonly name: string
        readonly startsAt: Date
        readonly endsAt: Date
      }) =>
        Effect.gen(function*() {
          if (input.endsAt.getTime() <= input.startsAt.getTime()) return yield* new EventTimesInvalid()
          yield* getVenue(input.venueId)
          const id = Crypto.randomUUID()
          return yield* sql.withTransaction(Effect.gen(function*() {
            const [event] = yield* sql<Event>`
              INSERT INTO events (id, venue_id, name, starts_at, ends_at)
              VALUES (${id}, ${input.venueId}, ${input.name}, ${input.startsAt}, ${input.endsAt})
              RETURNING ${eventColumns(sql)}
            `
            yield* audit.record({ action: "event.created", venueId: input.venueId, eventId: id })
            return event!
          }))
        }).pipe(Effect.withSpan("Venues.createEvent"))

      const listEvents = (venueId?: string) =>
        sql<Event>`
          SELECT ${eventColumns(sql)} FROM events
          WHERE ${venueId === undefined ? sql`true` : sql`venue_id = ${venueId}`}
          ORDER BY starts_at, id
        `

      const getEvent = (eventId: string, venueId?: string) =>
        Effect.flatMap(
          sql<Event>`
            SELECT ${eventColumns(sql)} FROM events
            WHERE id = ${eventId} AND ${venueId === undefined ? sql`true` : sql`venue_id = ${venueId}`}
          `,
          (rows) => rows[0] === undefined ? Effect.fail(new EventNotFound({ id: eventId })) : Effect.succeed(rows[0])
        )

      const notify = (eventId: string, personId: string) =>
        sql`SELECT pg_notify(${galleryChannel}, ${encodeGalleryChange({ kind: "membership", eventId, personId })})`

      const addGuest = (eventId: string, personId: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const event = yield* getEvent(eventId)
          const people = yield* sql<{ venueId: string }>`
            SELECT venue_id AS "venueId" FROM people WHERE id = ${personId} FOR SHARE
          `
          if (people[0] === undefined) return yield* new PersonNotFound({ id: personId })
          if (people[0].venueId !== event.venueId) {
            return yield* new VenueMismatch({ detail: "the person is enrolled at another venue than the event's" })
          }
          const inserted = yield* sql`
            INSERT INTO event_guests (event_id, person_id) VALUES (${eventId}, ${personId})
            ON CONFLICT DO NOTHING RETURNING person_id
          `
          if (inserted.length > 0) {
            yield* audit.record({ action: "guest.added", venueId: event.venueId, eventId, personId })
            yield* notify(eventId, personId)
          }
          const [guest] = yield* sql<Guest>`
            SELECT g.person_id AS "personId", g.added_at AS "addedAt",
                   EXISTS (SELECT 1 FROM event_gallery v WHERE v.event_id = g.event_id AND v.person_id = g.person_id)
                     AS "inGallery"
            FROM event_guests g WHERE g.event_id = ${eventId} AND g.person_id = ${personId}
          `
          return guest!
        })).pipe(Effect.withSpan("Venues.addGuest"))

      const removeGuest = (eventId: string, personId: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const event = yield* getEvent(eventId)
          const deleted = yield* sql`
            DELETE FROM event_guests WHERE event_id = ${eventId} AND person_id = ${personId} RETURNING person_id
          `
          if (deleted.length > 0) {
            yield* audit.record({ action: "guest.removed", venueId: event.venueId, eventId, personId })
            yield* notify(eventId, personId)
          }
        })).pipe(Effect.withSpan("Venues.removeGuest"))

      const listGuests = (eventId: string) =>
        Effect.zipRight(
          getEvent(eventId),
          sql<Guest>`
            SELECT g.person_id AS "personId", g.added_at AS "addedAt",
                   EXISTS (SELECT 1 FROM event_gallery v WHERE v.event_id = g.event_id AND v.person_id = g.person_id)
                     AS "inGallery"
            FROM event_guests g WHERE g.event_id = ${eventId}
            ORDER BY g.added_at, g.person_id
          `
        )

      return {
        createVenue,
        listVenues,
        getVenue,
        createEvent,
        listEvents,
        getEvent,
        addGuest,
        removeGuest,
        listGuests
      }
    })
  )
}
