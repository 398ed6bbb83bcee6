import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Migration } from "../services/Migrator.js"

/**
 * Venues, devices and their keys, events and their admin-managed guests, people with their
 * consent history, encrypted templates and data keys, tombstones of erased people, and the audit
 * log. `event_gallery` is the contract between enrollment and matching: who may be identified at
 * an event. Ticketing replaces the view to add ticket holders, keeping its two columns.
 */
export const migration: Migration = {
  id: 300,
  name: "identity",
  up: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    yield* sql`
      CREATE FUNCTION gatehouse_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
      END
      $$
    `

    yield* sql`
      CREATE TABLE venues (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )
    `
    yield* sql`
      CREATE TABLE devices (
        id uuid PRIMARY KEY,
        venue_id uuid NOT NULL REFERENCES venues (id),
        name text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      )
    `
    yield* sql`CREATE INDEX devices_venue ON devices (venue_id)`
    // A device may hold several keys so that one can be rotated without downtime.
    yield* sql`
      CREATE TABLE device_keys (
        id uuid PRIMARY KEY,
        device_id uuid NOT NULL REFERENCES devices (id),
        key_hash bytea NOT NULL UNIQUE,
        hint text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      )
    `
    yield* sql`CREATE INDEX device_keys_device ON device_keys (device_id)`

    yield* sql`
      CREATE TABLE events (
        id uuid PRIMARY KEY,
        venue_id uuid NOT NULL REFERENCES venues (id),
        name text NOT NULL,
        starts_at timestamptz NOT NULL,
        ends_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        CHECK (ends_at > starts_at)
      )
    `
    yield* sql`CREATE INDEX events_venue ON events (venue_id, starts_at)`

    // The consent columns repeat the latest consent record so that galleries read one row.
    yield* sql`
      CREATE TABLE people (
        id uuid PRIMARY KEY,
        venue_id uuid NOT NULL REFERENCES venues (id),
        external_ref text,
        consent_state text NOT NULL CHECK (consent_state IN ('active', 'withdrawn')),
        consent_changed_at timestamptz NOT NULL DEFAULT now(),
        consent_expires_at timestamptz,
        enrolled_by uuid REFERENCES devices (id),
        created_at timestamptz NOT NULL DEFAULT now(),
        last_interaction_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (venue_id, external_ref)
      )
    `
    yield* sql`CREATE INDEX people_last_interaction ON people (last_interaction_at)`
    yield* sql`CREATE INDEX people_consent_expiry ON people (consent_expires_at) WHERE consent_expires_at IS NOT NULL`
    yield* sql`CREATE INDEX people_withdrawn ON people (consent_changed_at) WHERE consent_state = 'withdrawn'`

    // Consent history: rows are added, never changed; erasure removes them with the person.
    yield* sql`
      CREATE TABLE consent_records (
        id bigserial PRIMARY KEY,
        person_id uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
        state text NOT NULL CHECK (state IN ('granted', 'withdrawn')),
        purposes text[] NOT NULL,
        notice_version text NOT NULL,
        jurisdiction text NOT NULL,
        method text NOT NULL,
        given_at timestamptz NOT NULL,
        expires_at timestamptz,
        device_id uuid,
        recorded_at timestamptz NOT NULL DEFAULT now()
      )
    `
    yield* sql`CREATE INDEX consent_records_person ON consent_records (person_id, id)`
    yield* sql`
      CREATE TRIGGER consent_records_append_only BEFORE UPDATE ON consent_records
      FOR EACH ROW EXECUTE FUNCTION gatehouse_append_only()
    `

    // The person's data key, wrapped by the master key; deleting the row makes their sealed
    // templates unreadable wherever a copy survives (backups, replicas).
    yield* sql`
      CREATE TABLE person_keys (
        person_id uuid PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
        wrapped_key bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )
    `
    yield* sql`
      CREATE TABLE templates (
        id uuid PRIMARY KEY,
        person_id uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
        model_id text NOT NULL,
        dimension integer NOT NULL CHECK (dimension > 0),
        sealed bytea NOT NULL,
        device_id uuid,
        created_at timestamptz NOT NULL DEFAULT now()
      )
    `
    yield* sql`CREATE INDEX templates_person ON templates (person_id)`

    // What remains of an erased person: the id (so that late enrollments are refused), never
    // anything about them.
    yield* sql`
      CREATE TABLE tombstones (
        person_id uuid PRIMARY KEY,
        venue_id uuid NOT NULL,
        reason text NOT NULL CHECK (reason IN ('request', 'retention')),
        erased_at timestamptz NOT NULL DEFAULT now()
      )
    `

    yield* sql`
      CREATE TABLE event_guests (
        event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        person_id uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
        added_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (event_id, person_id)
      )
    `
    yield* sql`CREATE INDEX event_guests_person ON event_guests (person_id)`

    yield* sql`
      CREATE VIEW event_gallery AS
      SELECT g.event_id, g.person_id
      FROM event_guests g
      JOIN people p ON p.id = g.person_id
      WHERE p.consent_state = 'active' AND (p.consent_expires_at IS NULL OR p.consent_expires_at > now())
    `

    yield* sql`
      CREATE TABLE audit_log (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        action text NOT NULL,
        venue_id uuid,
        device_id uuid,
        person_id uuid,
        event_id uuid,
        details jsonb NOT NULL DEFAULT '{}'
      )
    `
    yield* sql`CREATE INDEX audit_log_venue ON audit_log (venue_id, id)`
    yield* sql`CREATE INDEX audit_log_person ON audit_log (person_id, id) WHERE person_id IS NOT NULL`
    yield* sql`
      CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
      FOR EACH ROW EXECUTE FUNCTION gatehouse_append_only()
    `
    yield* sql`
      CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
      FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_append_only()
    `
  })
}
