import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Migration } from "../services/Migrator.js"

/**
 * A check value of the master key the templates are sealed with (an HMAC of a fixed text, from
 * which the key cannot be recovered): an instance started with another key refuses to start
 * instead of failing to open every template.
 */
export const migration: Migration = {
  id: 301,
  name: "master_key_check",
  up: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      CREATE TABLE master_key_check (
        id integer PRIMARY KEY CHECK (id = 1),
        check_value text NOT NULL CHECK (check_value ~ '^[0-9a-f]{64}$'),
        created_at timestamptz NOT NULL DEFAULT now()
      )
    `
  })
}
