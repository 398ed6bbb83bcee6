import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { Migration } from "../services/Migrator.js"

/**
 * Ticketing: which provider event feeds each Gatehouse event (with the sync cursor and lease),
 * the synced tickets, and the links from tickets to people. `event_gallery` is replaced so that a
 * person with a valid linked ticket is in the event's gallery as well as a guest is.
 */
export const migration: Migration = {
  id: 400,
  name: "ticketing",
  up: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    // The cursor is the last (modified, id) of the provider's change feed that was applied. The
    // lease lets one instance at a time sync an event; others skip it until the lease expires.
    yield* sql`
      CREATE TABLE event_provider_links (
        event_id uuid PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
        provider_event text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now(),
        cursor_modified timestamptz,
        cursor_id bigint,
        last_attempt_at timestamptz,
        last_success_at timestamptz,
        last_error text,
        lease_owner text,
        lease_until timestamptz,
        CHECK ((cursor_modified IS NULL) = (cursor_id IS NULL))
      )
    `

    yield* sql`
      CREATE TABLE tickets (
        id uuid PRIMARY KEY,
        event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        provider_event text NOT NULL,
        provider_ticket_id bigint NOT NULL,
        provider_order text NOT NULL,
        secret text NOT NULL,
        holder_reference text,
        status text NOT NULL CHECK (status IN ('valid', 'cancelled', 'refunded', 'transferred')),
        provider_modified timestamptz NOT NULL,
        provider_version bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (event_id, provider_ticket_id),
        UNIQUE (event_id, secret)
      )
    `
    yield* sql`CREATE INDEX tickets_secret ON tickets (secret)`
    yield* sql`CREATE INDEX tickets_holder ON tickets (event_id, holder_reference) WHERE status = 'valid'`

    // A ticket has at most one active link; revoked links stay as history of who held it.
    yield* sql`
      CREATE TABLE ticket_links (
        id bigserial PRIMARY KEY,
        ticket_id uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
        event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        person_id uuid NOT NULL REFERENCES people (id) ON DELETE CASCADE,
        source text NOT NULL CHECK (source IN ('holder_reference', 'claim')),
        linked_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz,
        revoked_reason text CHECK (revoked_reason IN ('cancelled', 'refunded', 'transferred', 'holder_changed', 'unlinked')),
        CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
      )
    `
    yield* sql`CREATE UNIQUE INDEX ticket_links_active ON ticket_links (ticket_id) WHERE revoked_at IS NULL`
    yield* sql`CREATE INDEX ticket_links_person ON ticket_links (person_id) WHERE revoked_at IS NULL`
    yield* sql`CREATE INDEX ticket_links_event ON ticket_links (event_id, person_id) WHERE revoked_at IS NULL`

    yield* sql`
      CREATE OR REPLACE VIEW event_gallery AS
      SELECT g.event_id, g.person_id
      FROM event_guests g
      JOIN people p ON p.id = g.person_id
      WHERE p.consent_state = 'active' AND (p.consent_expires_at IS NULL OR p.consent_expires_at > now())
      UNION
      SELECT l.event_id, l.person_id
      FROM ticket_links l
      JOIN tickets t ON t.id = l.ticket_id
      JOIN people p ON p.id = l.person_id
      WHERE l.revoked_at IS NULL
        AND t.status = 'valid'
        AND p.consent_state = 'active' AND (p.consent_expires_at IS NULL OR p.consent_expires_at > now())
    `
  })
}
