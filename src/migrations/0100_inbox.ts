import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Migration } from "../services/Migrator.js"

/**
 * The processed-message table of the inbox. A row is a claim while `status = 'claimed'` (the
 * holder's `claim_token` fences it, `lease_until` bounds it on the database clock) and a record
 * of the first outcome afterwards. Payloads are never stored: only their fingerprint.
 */
export const migration: Migration = {
  id: 100,
  name: "inbox",
  up: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    // Completing a claim rewrites only unindexed columns: room on the page keeps it a HOT update.
    yield* sql`
      CREATE TABLE inbox_messages (
        scope text NOT NULL CHECK (length(scope) BETWEEN 1 AND 300),
        key text NOT NULL CHECK (length(key) BETWEEN 1 AND 300),
        fingerprint text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
        status text NOT NULL CHECK (status IN ('claimed', 'succeeded', 'rejected')),
        outcome jsonb,
        claim_token uuid NOT NULL,
        lease_until timestamptz,
        attempts integer NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        claimed_at timestamptz NOT NULL DEFAULT now(),
        completed_at timestamptz,
        PRIMARY KEY (scope, key),
        CHECK ((status = 'claimed') = (outcome IS NULL)),
        CHECK ((status = 'claimed') = (lease_until IS NOT NULL)),
        CHECK ((status = 'claimed') = (completed_at IS NULL))
      ) WITH (fillfactor = 80)
    `
    yield* sql`CREATE INDEX inbox_messages_created_at ON inbox_messages (created_at)`
  })
}
