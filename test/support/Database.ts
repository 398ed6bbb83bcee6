import { SqlClient } from "@effect/sql"
import { type PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import * as Crypto from "node:crypto"
import Pg from "pg"
import { inject } from "vitest"
import { pgClientLayer } from "../../src/layers/Database.js"
import { migrations } from "../../src/migrations/index.js"
import { migrate } from "../../src/services/Migrator.js"

/** The database of one test file: created empty for it, dropped after it. */
export class TestDatabase extends Context.Tag("test/TestDatabase")<TestDatabase, {
  readonly name: string
  readonly url: string
}>() {}

const withAdmin = <A>(run: (client: Pg.Client) => Promise<A>) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: inject("adminDatabaseUrl") })
    await client.connect()
    try {
      return await run(client)
    } finally {
      await client.end()
    }
  })

/** Creates an empty database on the test server; the scope drops it. */
export const freshDatabase = Effect.acquireRelease(
  Effect.gen(function*() {
    const name = `gatehouse_t_${Crypto.randomBytes(6).toString("hex")}`
    yield* withAdmin((client) => client.query(`CREATE DATABASE ${name}`))
    const url = new URL(inject("adminDatabaseUrl"))
    url.pathname = `/${name}`
    return { name, url: url.toString() }
  }),
  ({ name }) => withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
)

/** A client on a fresh database, without migrations. */
export const EmptyDatabaseLive: Layer.Layer<TestDatabase | SqlClient.SqlClient | PgClient.PgClient> = Layer
  .unwrapScoped(
    Effect.map(freshDatabase, (db) =>
      Layer.merge(
        Layer.succeed(TestDatabase, db),
        pgClientLayer({ url: Redacted.make(db.url), maxConnections: 20, connectTimeoutMs: 5000 }).pipe(Layer.orDie)
      ))
  )

/** A client on a fresh database with every migration applied. */
export const TestDatabaseLive: Layer.Layer<TestDatabase | SqlClient.SqlClient | PgClient.PgClient> = Layer
  .effectDiscard(Effect.orDie(migrate(migrations)))
  .pipe(Layer.provideMerge(EmptyDatabaseLive))

/**
 * A venue and one event of it, written straight into the identity tables, for tests of a service
 * that only needs them to exist. The event runs from `startedAgo` ago for a day.
 */
export const insertVenueWithEvent = (startedAgo: "0 seconds" | "1 hour" = "0 seconds") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const venueId = Crypto.randomUUID()
    const eventId = Crypto.randomUUID()
    yield* sql`INSERT INTO venues (id, name) VALUES (${venueId}, 'v')`
    yield* sql`
      INSERT INTO events (id, venue_id, name, starts_at, ends_at)
      VALUES (${eventId}, ${venueId}, 'e', now() - ${startedAgo}::interval, now() + interval '1 day')
    `
    return { venueId, eventId }
  })
