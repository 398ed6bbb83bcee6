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

      // The fingerprint counts the (gallery row, template) pairs of an event and sums a hash of
      // the template ids: anyone joining or leaving the gallery (consent withdrawn or expired,
      // guest removed, ticket voided) or any template added, removed or replaced changes it. A
      // person listed twice (guest and ticket holder) counts twice, consistently: the figure is
      // only compared with itself. Plain joins, no DISTINCT: this runs on every poll.
      const fingerprints = sql<{ eventId: string; templates: number; checksum: number }>`
        SELECT g.event_id AS "eventId", count(*)::int AS templates, sum(hashtext(t.id::text))::int8 AS checksum
        FROM event_gallery g
        JOIN events e ON e.id = g.event_id
        JOIN templates t ON t.person_id = g.person_id
        WHERE ${held}
        GROUP BY g.event_id
      `
      const heldEvents = sql<{ eventId: string; venueId: string }>`
        SELECT e.id AS "eventId", e.venue_id AS "venueId" FROM events e WHERE ${held}
      `
      const events = run(Effect.zipWith(heldEvents, fingerprints, (all, prints) => {
        const byEvent = new Map(prints.map((p) => [p.eventId, p]))
        return all.map((e): EventFingerprint => ({
          eventId: e.eventId,
          venueId: e.venueId,
          templates: byEvent.get(e.eventId)?.templates ?? 0,
          checksum: byEvent.get(e.eventId)?.checksum ?? 0
        }))
      })).pipe(Effect.withSpan("GallerySource.events"))

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
