import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer } from "effect"

/** Actions the audit log records; components add theirs here. */
export type AuditAction =
  | "venue.created"
  | "device.created"
  | "device.key_issued"
  | "device.key_revoked"
  | "device.revoked"
  | "event.created"
  | "guest.added"
  | "guest.removed"
  | "person.enrolled"
  | "template.added"
  | "consent.granted"
  | "consent.withdrawn"
  | "person.erased"
  | "identification"
  | "verification"
  | "admission"
  | "check_in_list.configured"
  | "event.provider_mapped"
  | "ticket.claimed"
  | "ticket.unlinked"

export interface AuditEntry {
  readonly action: AuditAction
  readonly venueId?: string | undefined
  readonly deviceId?: string | undefined
  readonly personId?: string | undefined
  readonly eventId?: string | undefined
  /** Ids, scores, thresholds, model ids. Never template vectors or personal data. */
  readonly details?: Record<string, unknown> | undefined
}

export interface AuditRecord {
  readonly id: number
  readonly at: Date
  readonly action: string
  readonly venueId: string | null
  readonly deviceId: string | null
  readonly personId: string | null
  readonly eventId: string | null
  readonly details: Record<string, unknown>
}

export interface AuditQuery {
  readonly venueId?: string | undefined
  readonly personId?: string | undefined
  readonly eventId?: string | undefined
  readonly action?: string | undefined
  /** Records with a larger id than this, for paging forward. */
  readonly after?: number | undefined
  readonly limit: number
}

// A numeric array this long in an audit entry can only be a vector that leaked in by mistake.
const longestNumberList = 64

const carriesVector = (value: unknown): boolean => {
  if (Array.isArray(value)) {
    if (value.length > longestNumberList && value.every((v) => typeof v === "number")) return true
    return value.some(carriesVector)
  }
  if (ArrayBuffer.isView(value)) return true
  if (value !== null && typeof value === "object") return Object.values(value).some(carriesVector)
  return false
}

export interface AuditShape {
  /**
   * Appends one record in the caller's transaction, so the record exists exactly when the
   * change it describes does. Dies on details that look like a template vector.
   */
  readonly record: (entry: AuditEntry) => Effect.Effect<void, SqlError>
  /** Records in id order (oldest first) matching every given filter. */
  readonly list: (query: AuditQuery) => Effect.Effect<ReadonlyArray<AuditRecord>, SqlError>
}

/** The append-only audit log (the table refuses updates and deletes). */
export class Audit extends Context.Tag("gatehouse/Audit")<Audit, AuditShape>() {
  static readonly layer = Layer.effect(
    Audit,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient

      const record = (entry: AuditEntry) =>
        Effect.suspend(() => {
          const details = entry.details ?? {}
          if (carriesVector(details)) return Effect.dieMessage(`audit details of ${entry.action} carry a vector`)
          return sql`
            INSERT INTO audit_log (action, venue_id, device_id, person_id, event_id, details)
            VALUES (${entry.action}, ${entry.venueId ?? null}, ${entry.deviceId ?? null},
                    ${entry.personId ?? null}, ${entry.eventId ?? null}, ${JSON.stringify(details)}::jsonb)
          `.pipe(Effect.asVoid)
        }).pipe(Effect.withSpan("Audit.record"))

      const list = (query: AuditQuery) =>
        sql<AuditRecord>`
          SELECT id, at, action, venue_id AS "venueId", device_id AS "deviceId", person_id AS "personId",
                 event_id AS "eventId", details
          FROM audit_log
          WHERE ${
          sql.and([
            ...(query.venueId === undefined ? [] : [sql`venue_id = ${query.venueId}`]),
            ...(query.personId === undefined ? [] : [sql`person_id = ${query.personId}`]),
            ...(query.eventId === undefined ? [] : [sql`event_id = ${query.eventId}`]),
            ...(query.action === undefined ? [] : [sql`action = ${query.action}`]),
            ...(query.after === undefined ? [] : [sql`id > ${query.after}`])
          ])
        }
          ORDER BY id
          LIMIT ${query.limit}
        `.pipe(Effect.withSpan("Audit.list"))

      return { record, list }
    })
  )
}
