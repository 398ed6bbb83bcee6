import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Migration } from "../services/Migrator.js"

/**
 * Check-in lists, the presence of each ticket on a list, every scan decided or recorded, and the
 * conflicts found among offline facts. Events and tickets belong to other components: they are
 * referred to by id, without foreign keys, so that their tables can change on their own terms.
 */
export const migration: Migration = {
  id: 500,
  name: "admission",
  up: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    yield* sql`
      CREATE TABLE check_in_lists (
        id uuid PRIMARY KEY,
        event_id uuid NOT NULL UNIQUE,
        allow_reentry boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )
    `

    // One row per ticket that was ever scanned on a list; its row lock serialises the decisions
    // about that ticket, so two gates scanning it at once cannot both let it in.
    yield* sql`
      CREATE TABLE check_in_presence (
        list_id uuid NOT NULL REFERENCES check_in_lists (id) ON DELETE CASCADE,
        ticket_id text NOT NULL,
        inside boolean NOT NULL DEFAULT false,
        entries integer NOT NULL DEFAULT 0 CHECK (entries >= 0),
        last_entry_id bigint,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (list_id, ticket_id)
      )
    `

    // A device's scan nonce is unique per device: a retried scan finds its first outcome here.
    // The scanned ticket reference is a bearer credential and is not kept; the fingerprint covers it.
    yield* sql`
      CREATE TABLE admissions (
        id bigserial PRIMARY KEY,
        device_id uuid NOT NULL,
        nonce text NOT NULL CHECK (length(nonce) BETWEEN 1 AND 128),
        fingerprint text NOT NULL,
        event_id uuid NOT NULL,
        list_id uuid REFERENCES check_in_lists (id),
        gate text NOT NULL,
        direction text NOT NULL CHECK (direction IN ('entry', 'exit')),
        method text NOT NULL CHECK (method IN ('probe', 'ticket')),
        ticket_id text,
        person_id uuid,
        score double precision,
        threshold double precision,
        model_id text,
        decision text NOT NULL CHECK (decision IN ('granted', 'denied')),
        reason text,
        flagged text,
        offline boolean NOT NULL,
        device_time timestamptz NOT NULL,
        server_time timestamptz NOT NULL DEFAULT now(),
        UNIQUE (device_id, nonce),
        CHECK ((decision = 'denied') = (reason IS NOT NULL)),
        CHECK (flagged IS NULL OR (offline AND decision = 'granted'))
      )
    `
    yield* sql`CREATE INDEX admissions_event ON admissions (event_id, id)`
    yield* sql`CREATE INDEX admissions_ticket ON admissions (list_id, ticket_id, id) WHERE ticket_id IS NOT NULL`

    // An offline fact that the online rules would have refused. `earlier_id` is the granted entry
    // it doubles, when that is the conflict.
    yield* sql`
      CREATE TABLE admission_conflicts (
        id bigserial PRIMARY KEY,
        admission_id bigint NOT NULL UNIQUE REFERENCES admissions (id),
        event_id uuid NOT NULL,
        ticket_id text,
        reason text NOT NULL,
        earlier_id bigint REFERENCES admissions (id),
        detected_at timestamptz NOT NULL DEFAULT now()
      )
    `
    yield* sql`CREATE INDEX admission_conflicts_event ON admission_conflicts (event_id, id)`
  })
}
