import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted, TestServices } from "effect"
import { pgClientLayer } from "../../src/layers/Database.js"
import { migrate, type Migration } from "../../src/services/Migrator.js"
import { EmptyDatabaseLive, TestDatabase } from "../support/Database.js"

const sample: ReadonlyArray<Migration> = [
  {
    id: 2,
    name: "counters",
    up: Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE counters (id text PRIMARY KEY, n int NOT NULL)`)
  },
  {
    id: 1,
    name: "seed_table",
    up: Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE seeds (id int PRIMARY KEY)`)
  }
]

/** A second, independent pool on the same database, as another process would have. */
const otherProcess = Effect.flatMap(
  TestDatabase,
  (db) => Effect.succeed(pgClientLayer({ url: Redacted.make(db.url), maxConnections: 2, connectTimeoutMs: 5000 }))
)

describe("Migrator", () => {
  it.layer(EmptyDatabaseLive)((it) => {
    it.effect("lets instances that start together on an empty database take turns", () =>
      Effect.gen(function*() {
        const other = yield* otherProcess

        const results = yield* Effect.all([
          migrate(sample),
          migrate(sample).pipe(Effect.provide(Layer.orDie(other))),
          migrate(sample).pipe(Effect.provide(Layer.orDie(other)))
        ], { concurrency: "unbounded" })

        expect(results.flat().sort()).toEqual([1, 2])
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ id: number }>`SELECT id FROM gatehouse_migrations ORDER BY id`
        expect(rows.map((r) => r.id)).toEqual([1, 2])
      }))

    it.effect("applies a lower id that arrives after higher ones ran", () =>
      Effect.gen(function*() {
        const late: Migration = {
          id: 0,
          name: "late",
          up: Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE late (id int)`)
        }

        const applied = yield* migrate([...sample, late])

        expect(applied).toEqual([0])
      }))

    it.effect("runs the batch again when its connection is terminated midway, applying each migration once", () =>
      Effect.gen(function*() {
        let runs = 0
        const cut: Migration = {
          id: 10,
          name: "cut_midway",
          up: Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            yield* sql`CREATE TABLE cut_midway (id int)`
            // The first run loses its connection, as when an operator terminates the backend.
            if (runs++ === 0) yield* sql`SELECT pg_terminate_backend(pg_backend_pid())`
          })
        }

        const applied = yield* TestServices.provideLive(migrate([...sample, cut]))

        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ id: number }>`SELECT id FROM gatehouse_migrations WHERE id = 10`
        expect(applied).toEqual([10])
        expect(runs).toBe(2)
        expect(rows).toHaveLength(1)
      }))
  })
})
