import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Chunk, Effect, Either, Layer, Option, Schema, Stream } from "effect"
import { decodeGalleryChange, galleryChannel } from "../domain/GalleryChange.js"
import { retryTransient } from "./Database.js"
import {
  type EventFingerprint,
  type GalleryChange,
  GallerySource,
  GallerySourceUnavailable,
  type ListedTemplate,
  type SourcePerson
} from "./GallerySource.js"
import { TemplateVault } from "./TemplateVault.js"

const isUuid = Schema.is(Schema.UUID)

// `forPeople` takes its people as query parameters; PostgreSQL allows 65,535 per statement.
const peoplePerQuery = 1000

/**
 * The gallery source over the database: who is in an event's gallery comes from the
 * `event_gallery` view (guests and ticket holders with active consent), which templates they
 * hold from template metadata, and the vectors from the template vault, which opens them.
 * Changes are announced on the `gallery_changed` channel (`pg_notify` in the transaction that
 * makes them, so they arrive after it commits).
 */
export const layer = (options: { readonly holdAfterEndMs: number }) =>
  Layer.effect(
    GallerySource,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const pg = yield* PgClient.PgClient
      const vault = yield* TemplateVault
      const holdSeconds = options.holdAfterEndMs / 1000

      const run = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        retryTransient(effect).pipe(Effect.mapError((cause) => new GallerySourceUnavailable({ cause })))

      const held = sql`e.ends_at > now() - make_interval(secs => ${holdSeconds})`

      // The fingerprint counts templates and sums a hash of their ids: adding, removing or
      // replacing any template of anyone in the gallery, or anyone joining or leaving it
      // (consent withdrawn or expired, guest removed, ticket voided), changes it.
      const events = run(sql<EventFingerprint>`
        SELECT e.id AS "eventId", e.venue_id AS "venueId",
               count(t.id)::int AS templates,
               coalesce(sum(hashtext(t.id::text)), 0)::int8 AS checksum
        FROM events e
        LEFT JOIN (SELECT DISTINCT event_id, person_id FROM event_gallery) g ON g.event_id = e.id
        LEFT JOIN templates t ON t.person_id = g.person_id
        WHERE ${held}
        GROUP BY e.id, e.venue_id
      `).pipe(Effect.withSpan("GallerySource.events"))

      const listing = (eventId: string) =>
        !isUuid(eventId) ? Effect.succeed([]) : run(sql<ListedTemplate>`
          SELECT t.id AS "templateId", t.person_id AS "personId", t.model_id AS "modelId"
          FROM (SELECT DISTINCT person_id FROM event_gallery WHERE event_id = ${eventId}) g
          JOIN templates t ON t.person_id = g.person_id
        `).pipe(Effect.withSpan("GallerySource.listing"))

      const eventsOf = (personId: string) =>
        !isUuid(personId) ? Effect.succeed([]) : run(sql<{ eventId: string }>`
          SELECT DISTINCT g.event_id AS "eventId"
          FROM event_gallery g JOIN events e ON e.id = g.event_id
          WHERE g.person_id = ${personId} AND ${held}
        `).pipe(Effect.map((rows) => rows.map((r) => r.eventId)), Effect.withSpan("GallerySource.eventsOf"))

      const templates = (personIds: ReadonlyArray<string>) => {
        const valid = personIds.filter(isUuid)
        const chunks = Chunk.chunksOf(Chunk.fromIterable(valid), peoplePerQuery)
        return Effect.forEach(chunks, (chunk) => run(vault.forPeople(Chunk.toReadonlyArray(chunk)))).pipe(
          Effect.map((parts) => parts.flat()),
          Effect.withSpan("GallerySource.templates")
        )
      }

      const eventVenue = (eventId: string) =>
        !isUuid(eventId) ? Effect.succeed(Option.none<string>()) : run(sql<{ venueId: string }>`
          SELECT venue_id AS "venueId" FROM events WHERE id = ${eventId}
        `).pipe(Effect.map((rows) => Option.fromNullable(rows[0]?.venueId)))

      const person = (personId: string) =>
        !isUuid(personId) ? Effect.succeed(Option.none<SourcePerson>()) : run(sql<SourcePerson>`
          SELECT id AS "personId", venue_id AS "venueId",
                 (consent_state = 'active' AND (consent_expires_at IS NULL OR consent_expires_at > now())) AS active
          FROM people WHERE id = ${personId}
        `).pipe(Effect.map((rows) => Option.fromNullable(rows[0])))

      const changes = pg.listen(galleryChannel).pipe(
        Stream.mapError((cause) => new GallerySourceUnavailable({ cause })),
        Stream.filterMap((payload) =>
          Either.match(decodeGalleryChange(payload), {
            onLeft: () => Option.none<GalleryChange>(),
            onRight: (change) => Option.some(change.kind === "membership" ? change : { personId: change.personId })
          })
        )
      )

      return { events, listing, eventsOf, templates, eventVenue, person, changes }
    })
  )
