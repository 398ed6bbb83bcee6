import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Crypto from "node:crypto"
import { encodeGalleryChange, galleryChannel } from "../../src/domain/GalleryChange.js"
import { Secrets } from "../../src/layers/Secrets.js"
import { AttemptLog } from "../../src/services/AttemptLog.js"
import * as GallerySourceSql from "../../src/services/GallerySourceSql.js"
import { Health } from "../../src/services/Health.js"
import { Matching } from "../../src/services/Matching.js"
import { TemplateVault } from "../../src/services/TemplateVault.js"
import { insertVenueWithEvent, TestDatabaseLive } from "../support/Database.js"
import { eventually } from "../support/Eventually.js"
import { announce, axis, enrollDirect, withdrawDirect } from "../support/Matching.js"

const model = "test-4d@1"

/** One running instance of the matching component; a long poll interval, so only announcements and explicit syncs act. */
const instance = Matching.layerWith({ pollInterval: "1 hour" }).pipe(
  Layer.provide(GallerySourceSql.layer({ holdAfterEndMs: 0 })),
  Layer.provide(AttemptLog.layerMemory),
  Layer.provide(Health.layer)
)

const start = Effect.map(Layer.build(instance), Context.get(Matching))

const world = Effect.map(
  insertVenueWithEvent("1 hour"),
  ({ eventId, venueId }) => ({ venueId, eventId, device: { deviceId: Crypto.randomUUID(), venueId } })
)

const guest = (eventId: string, personId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(Effect.zipRight(
      sql`INSERT INTO event_guests (event_id, person_id) VALUES (${eventId}, ${personId})`,
      sql`SELECT pg_notify(${galleryChannel}, ${encodeGalleryChange({ kind: "membership", eventId, personId })})`
    )))

const found = (
  matching: Matching["Type"],
  device: { deviceId: string; venueId: string },
  eventId: string,
  index: number
) =>
  matching.identify(device, { eventId, probe: { modelId: model, vector: axis(4, index) } }).pipe(
    Effect.map((r) => r.candidates.map((c) => c.personId))
  )

describe("matching on the database, several instances", () => {
  layer(
    Layer.mergeAll(TemplateVault.layer, Health.layer).pipe(
      Layer.provideMerge(TestDatabaseLive),
      Layer.provide(Secrets.layerTest)
    ),
    { excludeTestServices: true }
  )((it) => {
    it.scoped("every instance follows announcements; forget acts at once; the poll catches a lost announcement", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const vault = yield* TemplateVault
        const { device, eventId, venueId } = yield* world
        const a = yield* start
        const b = yield* start
        yield* a.sync
        yield* b.sync
        const [p, q, r] = [0, 1, 2]
        const ids: Array<string> = []
        for (const i of [p, q, r]) ids.push(yield* enrollDirect(venueId, [{ modelId: model, vector: axis(4, i) }]))

        // Enrollment and guest list changes arrive through the announcement.
        for (const id of ids) yield* guest(eventId, id)
        for (const m of [a, b]) {
          for (const i of [p, q, r]) yield* eventually(Effect.map(found(m, device, eventId, i), (c) => c[0] === ids[i]))
        }

        // Withdrawal: the instance that made it forgets at once; the other follows the announcement.
        yield* withdrawDirect(ids[p], true)
        yield* a.forget(ids[p])
        expect(yield* found(a, device, eventId, p)).toEqual([])
        yield* eventually(Effect.map(found(b, device, eventId, p), (c) => c.length === 0))

        // A lost announcement: b still answers from its last state until its poll.
        yield* withdrawDirect(ids[q], false)
        expect(yield* found(b, device, eventId, q)).toEqual([ids[q]])
        yield* b.sync
        expect(yield* found(b, device, eventId, q)).toEqual([])

        // Erasure: templates and key destroyed, person deleted, announced.
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* vault.destroy(ids[r])
          yield* sql`DELETE FROM people WHERE id = ${ids[r]}`
          yield* announce(ids[r])
        }))
        for (const m of [a, b]) yield* eventually(Effect.map(found(m, device, eventId, r), (c) => c.length === 0))
        yield* a.sync
        expect((yield* a.stats).templates).toBe(0)
      }))

    it.scoped("a new instance loads every gallery from the database at start", () =>
      Effect.gen(function*() {
        const { device, eventId, venueId } = yield* world
        const id = yield* enrollDirect(venueId, [{ modelId: model, vector: axis(4, 3) }])
        yield* guest(eventId, id)

        const fresh = yield* start
        yield* eventually(Effect.map(fresh.stats, (s) => s.loaded))

        expect(yield* found(fresh, device, eventId, 3)).toEqual([id])
      }))
  })
})
