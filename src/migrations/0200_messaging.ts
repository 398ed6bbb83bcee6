import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Migration } from "../services/Migrator.js"

/**
 * Outbox, work queue, topic subscriptions and dead letters. Rows are deleted once delivered or
 * completed: the tables hold pending work only, and the inbox keeps what was processed.
 */
export const migration: Migration = {
  id: 200,
  name: "messaging",
  up: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    yield* sql`
      CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        message_id text NOT NULL,
        topic text NOT NULL,
        payload jsonb NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now()
      )
    `
    yield* sql`CREATE INDEX outbox_due ON outbox (next_attempt_at, id)`

    yield* sql`
      CREATE TABLE queue_subscriptions (
        topic text NOT NULL,
        queue text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (topic, queue)
      )
    `

    // Fencing tokens come from one sequence, so a token never repeats across jobs or claims.
    yield* sql`CREATE SEQUENCE jobs_lease_token`
    yield* sql`
      CREATE TABLE jobs (
        id bigserial PRIMARY KEY,
        queue text NOT NULL,
        topic text NOT NULL,
        message_id text NOT NULL,
        payload jsonb NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        run_at timestamptz NOT NULL DEFAULT now(),
        lease_token bigint NOT NULL DEFAULT 0,
        leased_until timestamptz,
        leased_by text,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now()
      )
    `
    yield* sql`CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE leased_until IS NULL`
    yield* sql`CREATE INDEX jobs_leased ON jobs (leased_until) WHERE leased_until IS NOT NULL`

    yield* sql`
      CREATE TABLE dead_letters (
        id bigserial PRIMARY KEY,
        source text NOT NULL CHECK (source IN ('outbox', 'queue')),
        queue text,
        topic text NOT NULL,
        message_id text NOT NULL,
        payload jsonb NOT NULL,
        attempts integer NOT NULL,
        last_error text NOT NULL,
        created_at timestamptz NOT NULL,
        parked_at timestamptz NOT NULL DEFAULT now()
      )
    `
  })
}
