import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted } from "effect"
import * as Crypto from "node:crypto"
import { Secrets } from "../../src/layers/Secrets.js"
import { MasterKeyMismatch, TemplateVault } from "../../src/services/TemplateVault.js"
import { insertVenueWithEvent, TestDatabaseLive } from "../support/Database.js"

const VaultLive = TemplateVault.layer.pipe(Layer.provideMerge(TestDatabaseLive), Layer.provide(Secrets.layerTest))

const unit = (values: ReadonlyArray<number>) => {
  const norm = Math.hypot(...values)
  return Float32Array.from(values, (v) => v / norm)
}

const person = (venueId: string, eventId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const id = Crypto.randomUUID()
    yield* sql`INSERT INTO people (id, venue_id, consent_state) VALUES (${id}, ${venueId}, 'active')`
    yield* sql`INSERT INTO event_guests (event_id, person_id) VALUES (${eventId}, ${id})`
    return id
  })

describe("TemplateVault", () => {
  it.layer(VaultLive)((it) => {
    const setup = insertVenueWithEvent()

    it.effect("seals templates at rest and opens them for the event's gallery", () =>
      Effect.gen(function*() {
        const vault = yield* TemplateVault
        const sql = yield* SqlClient.SqlClient
        const { eventId, venueId } = yield* setup
        const alice = yield* person(venueId, eventId)
        const vector = unit([1, 2, 3, 4])
        yield* vault.createKey(alice)
        yield* vault.store(alice, null, [{ templateId: Crypto.randomUUID(), modelId: "test-4d@1", vector }])

        const gallery = yield* vault.forGallery(eventId)
        const stored = yield* sql<{ sealed: Uint8Array }>`SELECT sealed FROM templates WHERE person_id = ${alice}`

        expect(gallery).toHaveLength(1)
        expect(gallery[0]!.personId).toBe(alice)
        expect(Array.from(gallery[0]!.vector)).toEqual(Array.from(vector))
        expect(Buffer.from(stored[0]!.sealed).includes(Buffer.from(vector.buffer))).toBe(false)
      }))

    it.effect("leaves out people whose consent is withdrawn and those whose key is destroyed", () =>
      Effect.gen(function*() {
        const vault = yield* TemplateVault
        const sql = yield* SqlClient.SqlClient
        const { eventId, venueId } = yield* setup
        const [a, b, c] = [
          yield* person(venueId, eventId),
          yield* person(venueId, eventId),
          yield* person(venueId, eventId)
        ]
        for (const id of [a, b, c]) {
          yield* vault.createKey(id)
          yield* vault.store(id, null, [{
            templateId: Crypto.randomUUID(),
            modelId: "test-4d@1",
            vector: unit([1, 0, 0, 1])
          }])
        }

        yield* sql`UPDATE people SET consent_state = 'withdrawn' WHERE id = ${b}`
        yield* vault.destroy(c)
        const gallery = yield* vault.forGallery(eventId)

        expect(gallery.map((t) => t.personId)).toEqual([a])
        expect(yield* vault.count(c)).toBe(0)
      }))

    it.effect("refuses a sealed template moved onto another person", () =>
      Effect.gen(function*() {
        const vault = yield* TemplateVault
        const sql = yield* SqlClient.SqlClient
        const { eventId, venueId } = yield* setup
        const a = yield* person(venueId, eventId)
        const b = yield* person(venueId, eventId)
        yield* vault.createKey(a)
        yield* vault.createKey(b)
        yield* vault.store(a, null, [{
          templateId: Crypto.randomUUID(),
          modelId: "test-4d@1",
          vector: unit([1, 1, 1, 1])
        }])

        yield* sql`UPDATE templates SET person_id = ${b} WHERE person_id = ${a}`
        const opened = yield* vault.forPeople([a, b])

        expect(opened).toEqual([])
      }))

    it.effect("refuses to start with another master key than the one the database's templates are sealed with", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const withKey = (fill: number) =>
          Effect.exit(Effect.scoped(Layer.build(TemplateVault.layer.pipe(
            Layer.provide(Layer.succeed(SqlClient.SqlClient, sql)),
            Layer.provide(
              Layer.effect(
                Secrets,
                Effect.map(Secrets, (secrets) => ({ ...secrets, masterKey: Redacted.make(Buffer.alloc(32, fill)) }))
              ).pipe(Layer.provide(Secrets.layerTest))
            )
          ))))

        const same = yield* withKey(7)
        const other = yield* withKey(8)

        expect(Exit.isSuccess(same)).toBe(true)
        expect(other).toEqual(Exit.fail(new MasterKeyMismatch()))
      }))
  })
})
