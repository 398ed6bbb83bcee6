import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Migration } from "../services/Migrator.js"

/**
 * The person a processed message is about, when it is about one: an erasure removes the stored
 * outcomes that name them (their external reference, their consent record) at once instead of
 * when the retention window closes.
 */
export const migration: Migration = {
  id: 101,
  name: "inbox_subject",
  up: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE inbox_messages ADD COLUMN subject text CHECK (length(subject) BETWEEN 1 AND 300)`
    yield* sql`CREATE INDEX inbox_messages_subject ON inbox_messages (subject) WHERE subject IS NOT NULL`
  })
}
