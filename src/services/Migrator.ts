import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { commitFailuresAsErrors, retryTransient } from "./Database.js"

/** One schema change. Ids are unique and ordered; any id not yet applied runs, even a lower one. */
export interface Migration {
  readonly id: number
  readonly name: string
  readonly up: Effect.Effect<void, SqlError, SqlClient.SqlClient>
}

/**
 * Applies every migration not yet recorded, in id order, in one transaction that holds an
 * advisory lock: instances starting together on one database take turns, and the second finds
 * nothing left to do. A failing migration rolls back the whole batch. A connection lost on the way
 * (the server restarting, an operator terminating backends) runs the batch again: whatever
 * committed is recorded, so the retry applies only what is left.
 */
export const migrate = (migrations: ReadonlyArray<Migration>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const ordered = [...migrations].sort((a, b) => a.id - b.id)

    const applied = yield* retryTransient(commitFailuresAsErrors(sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT pg_advisory_xact_lock(hashtext('gatehouse:migrations'))`
      yield* sql`
        CREATE TABLE IF NOT EXISTS gatehouse_migrations (
          id integer PRIMARY KEY,
          name text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        )
      `
      const done = new Set((yield* sql<{ id: number }>`SELECT id FROM gatehouse_migrations`).map((r) => r.id))
      const pending = ordered.filter((m) => !done.has(m.id))
      for (const migration of pending) {
        yield* migration.up
        yield* sql`INSERT INTO gatehouse_migrations (id, name) VALUES (${migration.id}, ${migration.name})`
      }
      return pending
    }))))

    for (const migration of applied) {
      yield* Effect.logInfo("migration applied").pipe(
        Effect.annotateLogs({ component: "database", migration: `${migration.id}_${migration.name}` })
      )
    }
    return applied.map((m) => m.id)
  }).pipe(Effect.withSpan("Migrator.migrate"))
