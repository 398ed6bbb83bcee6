import { HttpApiSchema } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Either, Layer, Option, Schema } from "effect"
import * as Crypto from "node:crypto"
import {
  decide,
  Decision,
  Direction,
  type Direction as DirectionType,
  type ListRules,
  Outcome,
  pickTicket,
  type Presence,
  Reason,
  type Resolution,
  resolvedTicket,
  unresolved
} from "../domain/CheckIn.js"
import { EventNotFound } from "../domain/Identity.js"
import { findModel } from "../domain/Models.js"
import * as Vector from "../domain/Vector.js"
import { Audit, type AuditEntry } from "./Audit.js"

// ---------------------------------------------------------------------------------------------
// Errors

/** The device sent another scan under a nonce it used before; the first scan keeps its outcome. */
export class ScanNonceReused extends Schema.TaggedError<ScanNonceReused>()(
  "ScanNonceReused",
  { nonce: Schema.String, admissionId: Schema.Number },
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return `scan nonce ${this.nonce} was already used by this device for a different scan`
  }
}

/**
 * Identification cannot answer now (galleries still loading, the attempt log full): not the scan's
 * fault, so nothing is recorded and a retry of the scan decides it.
 */
export class IdentificationUnavailable extends Schema.TaggedError<IdentificationUnavailable>()(
  "IdentificationUnavailable",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return this.detail
  }
}

/** The probe cannot be searched (unknown model, wrong dimension, not a usable vector). */
export class ProbeRejected extends Schema.TaggedError<ProbeRejected>()(
  "ProbeRejected",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return this.detail
  }
}

// ---------------------------------------------------------------------------------------------
// What admission needs from other components

/** A synced ticket as admission sees it. */
export interface TicketView {
  readonly ticketId: string
  readonly eventId: string
  /** False when cancelled, refunded or transferred away. */
  readonly valid: boolean
}

/** What identification answered for a probe: the model and threshold used, and the best match. */
export interface Identification {
  readonly modelId: string
  readonly threshold: number
  /** The identification attempt's id, when matching made one. */
  readonly attemptId: string | null
  /**
   * The attempt's audit entry, not written yet: admission writes it in the transaction that stores
   * its decision, so the two are kept together and once, and a scan never waits for a write on
   * another connection while its transaction holds one.
   */
  readonly attempt: AuditEntry | null
  /** The best candidate scoring at least the threshold; none when nobody did. */
  readonly match: Option.Option<{ readonly personId: string; readonly score: number }>
}

/** The device a scan comes from: identification is confined to its venue. */
export interface Requester {
  readonly deviceId: string
  readonly venueId: string
}

export interface Probe {
  readonly modelId: string
  readonly vector: ReadonlyArray<number>
}

/**
 * The other components' answers admission decides from: events (identity), synced tickets and
 * their links (ticketing) and identification (matching). None of them reaches the ticketing
 * provider: the gate decides from what was synced.
 */
export interface AdmissionDirectoryShape {
  readonly eventVenue: (eventId: string) => Effect.Effect<Option.Option<string>, SqlError>
  /** The ticket a scanned reference names, preferring one of `eventId` when several match. */
  readonly ticketByReference: (
    eventId: string,
    reference: string
  ) => Effect.Effect<Option.Option<TicketView>, SqlError>
  /** Tickets of `eventId` linked to the person, valid or not. */
  readonly ticketsOfPerson: (eventId: string, personId: string) => Effect.Effect<ReadonlyArray<TicketView>, SqlError>
  /** 1:N search in the event's gallery, in memory; the caller records the attempt (`attempt`). */
  readonly identify: (
    requester: Requester,
    eventId: string,
    probe: Probe
  ) => Effect.Effect<Identification, ProbeRejected | IdentificationUnavailable | EventNotFound>
  /** The person was identified at a gate: an interaction that moves their retention date. */
  readonly recordInteraction: (personId: string) => Effect.Effect<void, SqlError>
}

export class AdmissionDirectory extends Context.Tag("gatehouse/AdmissionDirectory")<
  AdmissionDirectory,
  AdmissionDirectoryShape
>() {}

/**
 * Where a recorded check-in goes besides the admissions table: the provider write-back. Called
 * inside the admission's transaction, so it must only write (the outbox), never call out.
 */
export interface CheckInSinkShape {
  readonly recorded: (admission: Admission) => Effect.Effect<void, SqlError>
}

export class CheckInSink extends Context.Tag("gatehouse/CheckInSink")<CheckInSink, CheckInSinkShape>() {
  static readonly layerNone = Layer.succeed(CheckInSink, { recorded: () => Effect.void })
}

/**
 * Refuses a probe that identification could not search (unknown model, wrong dimension, not a
 * usable vector), before anything about the scan is stored. The detail never quotes the values.
 */
export const checkProbe = (probe: Probe): Effect.Effect<void, ProbeRejected> => {
  const model = findModel(probe.modelId)
  if (model === undefined) return Effect.fail(new ProbeRejected({ detail: `probe: unknown model ${probe.modelId}` }))
  return Either.match(Vector.validate(probe.vector, model.dimension), {
    onLeft: (problem) => Effect.fail(new ProbeRejected({ detail: `probe: ${Vector.describeProblem(problem)}` })),
    onRight: () => Effect.void
  })
}

// ---------------------------------------------------------------------------------------------
// Records

export const Method = Schema.Literal("probe", "ticket")

/** One scan as recorded: its decision, or the offline fact and its flag. */
export class Admission extends Schema.Class<Admission>("Admission")({
  admissionId: Schema.Number,
  deviceId: Schema.String,
  nonce: Schema.String,
  eventId: Schema.String,
  gate: Schema.String,
  direction: Direction,
  method: Method,
  ticketId: Schema.NullOr(Schema.String),
  personId: Schema.NullOr(Schema.String),
  score: Schema.NullOr(Schema.Number),
  threshold: Schema.NullOr(Schema.Number),
  modelId: Schema.NullOr(Schema.String),
  decision: Decision,
  reason: Schema.NullOr(Reason),
  flagged: Schema.NullOr(Reason),
  offline: Schema.Boolean,
  deviceTime: Schema.Date,
  serverTime: Schema.Date
}) {
  get outcome(): Outcome {
    return new Outcome({ decision: this.decision, reason: this.reason, flagged: this.flagged })
  }
}

/** An offline fact that the online rules would have refused. */
export class Conflict extends Schema.Class<Conflict>("Conflict")({
  conflictId: Schema.Number,
  admissionId: Schema.Number,
  ticketId: Schema.NullOr(Schema.String),
  reason: Reason,
  /** The granted entry this one doubles, for `already_admitted`. */
  earlierAdmissionId: Schema.NullOr(Schema.Number),
  detectedAt: Schema.Date
}) {}

export class CheckInList extends Schema.Class<CheckInList>("CheckInList")({
  listId: Schema.String,
  eventId: Schema.String,
  allowReentry: Schema.Boolean,
  updatedAt: Schema.Date
}) {}

export interface Scan {
  readonly deviceId: string
  readonly venueId: string
  readonly nonce: string
  readonly eventId: string
  readonly gate: string
  readonly direction: DirectionType
  readonly offline: boolean
  readonly deviceTime: Date
  readonly target:
    | { readonly _tag: "Ticket"; readonly reference: string }
    | { readonly _tag: "Probe"; readonly probe: Probe }
}

export interface Admitted {
  readonly admission: Admission
  /** The nonce was seen before: this is its first outcome, nothing changed. */
  readonly replayed: boolean
}

export interface AdmissionPage {
  readonly admissions: ReadonlyArray<Admission>
  readonly conflicts: ReadonlyArray<Conflict>
  /** Pass as `after` for the next page; null when this page is the last. */
  readonly next: number | null
}

export interface AdmissionsShape {
  /**
   * Decides (online) or records (offline) one gate scan. The first delivery of a device's nonce
   * decides; every later delivery with the same scan returns that outcome and changes nothing,
   * and the nonce with another scan is `ScanNonceReused`. Decisions about one ticket are
   * serialised by a row lock on its presence, so scans at two gates cannot both let it in.
   * Only synced tickets are read: the provider is never on this path.
   */
  readonly admit: (
    scan: Scan
  ) => Effect.Effect<
    Admitted,
    ScanNonceReused | EventNotFound | ProbeRejected | IdentificationUnavailable | SqlError
  >
  /** Admissions of an event in decision order after `after`, with the conflicts among them. */
  readonly list: (
    eventId: string,
    options: { readonly after: number; readonly limit: number; readonly flaggedOnly: boolean }
  ) => Effect.Effect<AdmissionPage, SqlError>
  /** The event's check-in list; created with the default rules (no re-entry) on first use. */
  readonly checkInList: (eventId: string) => Effect.Effect<CheckInList, SqlError>
  readonly configureList: (eventId: string, rules: ListRules) => Effect.Effect<CheckInList, SqlError>
}

// ---------------------------------------------------------------------------------------------
// Implementation

interface AdmissionRow {
  readonly id: number
  readonly device_id: string
  readonly nonce: string
  readonly fingerprint: string
  readonly event_id: string
  readonly gate: string
  readonly direction: DirectionType
  readonly method: "probe" | "ticket"
  readonly ticket_id: string | null
  readonly person_id: string | null
  readonly score: number | null
  readonly threshold: number | null
  readonly model_id: string | null
  readonly decision: "granted" | "denied"
  readonly reason: Reason | null
  readonly flagged: Reason | null
  readonly offline: boolean
  readonly device_time: Date
  readonly server_time: Date
}

const toAdmission = (row: AdmissionRow) =>
  new Admission({
    admissionId: row.id,
    deviceId: row.device_id,
    nonce: row.nonce,
    eventId: row.event_id,
    gate: row.gate,
    direction: row.direction,
    method: row.method,
    ticketId: row.ticket_id,
    personId: row.person_id,
    score: row.score,
    threshold: row.threshold,
    modelId: row.model_id,
    decision: row.decision,
    reason: row.reason,
    flagged: row.flagged,
    offline: row.offline,
    deviceTime: row.device_time,
    serverTime: row.server_time
  })

interface ListRow {
  readonly id: string
  readonly event_id: string
  readonly allow_reentry: boolean
  readonly updated_at: Date
}

const toList = (row: ListRow) =>
  new CheckInList({ listId: row.id, eventId: row.event_id, allowReentry: row.allow_reentry, updatedAt: row.updated_at })

/**
 * What a scan says besides its nonce, hashed: a redelivery must say the same. The probe enters
 * only through the hash, which is how it stays out of storage.
 */
export const scanFingerprint = (scan: Scan): string =>
  Crypto.createHash("sha256").update(JSON.stringify([
    scan.eventId,
    scan.gate,
    scan.direction,
    scan.offline,
    scan.deviceTime.toISOString(),
    scan.target._tag === "Ticket"
      ? ["ticket", scan.target.reference]
      : ["probe", scan.target.probe.modelId, scan.target.probe.vector]
  ])).digest("hex")

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const directory = yield* AdmissionDirectory
  const sink = yield* CheckInSink
  const audit = yield* Audit

  const byNonce = (deviceId: string, nonce: string) =>
    Effect.map(
      sql<AdmissionRow>`SELECT * FROM admissions WHERE device_id = ${deviceId} AND nonce = ${nonce}`,
      (rows) => Option.fromNullable(rows[0])
    )

  const replay = (row: AdmissionRow, scan: Scan, fingerprint: string) =>
    row.fingerprint === fingerprint
      ? Effect.succeed<Admitted>({ admission: toAdmission(row), replayed: true })
      : Effect.fail(new ScanNonceReused({ nonce: scan.nonce, admissionId: row.id }))

  const checkInList = (eventId: string) =>
    Effect.gen(function*() {
      yield* sql`
        INSERT INTO check_in_lists (id, event_id) VALUES (${Crypto.randomUUID()}, ${eventId})
        ON CONFLICT (event_id) DO NOTHING
      `
      const rows = yield* sql<ListRow>`SELECT * FROM check_in_lists WHERE event_id = ${eventId}`
      return toList(rows[0]!)
    })

  const configureList = (eventId: string, rules: ListRules) =>
    sql.withTransaction(Effect.gen(function*() {
      const rows = yield* sql<ListRow>`
        INSERT INTO check_in_lists (id, event_id, allow_reentry)
        VALUES (${Crypto.randomUUID()}, ${eventId}, ${rules.allowReentry})
        ON CONFLICT (event_id) DO UPDATE SET allow_reentry = EXCLUDED.allow_reentry, updated_at = now()
        RETURNING *
      `
      const list = toList(rows[0]!)
      yield* audit.record({
        action: "check_in_list.configured",
        venueId: Option.getOrUndefined(yield* directory.eventVenue(eventId)),
        eventId,
        details: { listId: list.listId, allowReentry: list.allowReentry }
      })
      return list
    })).pipe(Effect.withSpan("Admission.configureList"))

  interface Locked {
    readonly ticket: TicketView
    readonly presence: Presence & { readonly lastEntryId: number | null }
  }

  /** Locks the presence rows of the tickets, in id order so that two scans never deadlock. */
  const lockPresence = (listId: string, tickets: ReadonlyArray<TicketView>) =>
    Effect.forEach(
      [...tickets].sort((a, b) => a.ticketId < b.ticketId ? -1 : a.ticketId > b.ticketId ? 1 : 0),
      (ticket) =>
        Effect.gen(function*() {
          yield* sql`
            INSERT INTO check_in_presence (list_id, ticket_id) VALUES (${listId}, ${ticket.ticketId})
            ON CONFLICT DO NOTHING
          `
          const rows = yield* sql<{ inside: boolean; entries: number; last_entry_id: number | null }>`
            SELECT inside, entries, last_entry_id FROM check_in_presence
            WHERE list_id = ${listId} AND ticket_id = ${ticket.ticketId}
            FOR UPDATE
          `
          const row = rows[0]!
          return { ticket, presence: { inside: row.inside, entries: row.entries, lastEntryId: row.last_entry_id } }
        }),
      { concurrency: 1 }
    )

  const resolutionOf = (eventId: string, ticket: TicketView): Resolution =>
    resolvedTicket({ inEvent: ticket.eventId === eventId, valid: ticket.valid })

  const record = (scan: Scan, fingerprint: string, identified: Option.Option<Identification>) =>
    Effect.gen(function*() {
      const list = yield* checkInList(scan.eventId)
      const rules: ListRules = { allowReentry: list.allowReentry }
      const match = Option.flatMap(identified, (i) => i.match)

      const tickets: ReadonlyArray<TicketView> = scan.target._tag === "Ticket"
        ? Option.toArray(yield* directory.ticketByReference(scan.eventId, scan.target.reference))
        : Option.isSome(match)
        ? yield* directory.ticketsOfPerson(scan.eventId, match.value.personId)
        : []
      const locked: ReadonlyArray<Locked> = yield* lockPresence(list.listId, tickets)

      const fallback: Resolution = scan.target._tag === "Ticket"
        ? unresolved("unknown_ticket")
        : Option.isNone(match)
        ? unresolved("no_match")
        : unresolved("no_ticket")
      const choice = pickTicket(
        rules,
        locked.map((l) => ({ presence: l.presence, resolution: resolutionOf(scan.eventId, l.ticket) })),
        scan
      )
      const chosen = choice === -1 ? undefined : locked[choice]
      const { outcome, presence } = decide(
        rules,
        chosen?.presence ?? { inside: false, entries: 0 },
        chosen === undefined ? fallback : resolutionOf(scan.eventId, chosen.ticket),
        scan
      )

      const identification = Option.getOrNull(identified)
      const person = Option.getOrNull(match)
      const rows = yield* sql<AdmissionRow>`
        INSERT INTO admissions (
          device_id, nonce, fingerprint, event_id, list_id, gate, direction, method, ticket_id, person_id,
          score, threshold, model_id, decision, reason, flagged, offline, device_time
        ) VALUES (
          ${scan.deviceId}, ${scan.nonce}, ${fingerprint}, ${scan.eventId}, ${list.listId}, ${scan.gate},
          ${scan.direction}, ${scan.target._tag === "Ticket" ? "ticket" : "probe"}, ${chosen?.ticket.ticketId ?? null},
          ${person?.personId ?? null}, ${person?.score ?? null}, ${identification?.threshold ?? null},
          ${identification?.modelId ?? null}, ${outcome.decision}, ${outcome.reason}, ${outcome.flagged},
          ${scan.offline}, ${scan.deviceTime}
        )
        RETURNING *
      `
      const admission = toAdmission(rows[0]!)

      if (chosen !== undefined && outcome.decision === "granted") {
        const lastEntryId = scan.direction === "entry" ? admission.admissionId : chosen.presence.lastEntryId
        yield* sql`
          UPDATE check_in_presence
          SET inside = ${presence.inside}, entries = ${presence.entries}, last_entry_id = ${lastEntryId},
              updated_at = now()
          WHERE list_id = ${list.listId} AND ticket_id = ${chosen.ticket.ticketId}
        `
      }
      const earlier = outcome.flagged === "already_admitted" ? chosen?.presence.lastEntryId ?? null : null
      if (outcome.flagged !== null) {
        yield* sql`
          INSERT INTO admission_conflicts (admission_id, event_id, ticket_id, reason, earlier_id)
          VALUES (${admission.admissionId}, ${scan.eventId}, ${admission.ticketId}, ${outcome.flagged}, ${earlier})
        `
        yield* Effect.logWarning("offline admission flagged").pipe(
          Effect.annotateLogs({ component: "admission", deviceId: scan.deviceId, reason: outcome.flagged })
        )
      }
      if (identification?.attempt != null) yield* audit.record(identification.attempt)
      if (admission.personId !== null) yield* directory.recordInteraction(admission.personId)
      yield* audit.record({
        action: "admission",
        venueId: scan.venueId,
        deviceId: scan.deviceId,
        eventId: scan.eventId,
        personId: admission.personId ?? undefined,
        details: {
          admissionId: admission.admissionId,
          nonce: scan.nonce,
          gate: scan.gate,
          direction: scan.direction,
          method: admission.method,
          offline: scan.offline,
          ticketId: admission.ticketId,
          decision: outcome.decision,
          reason: outcome.reason,
          flagged: outcome.flagged,
          earlierAdmissionId: earlier,
          attemptId: identification?.attemptId ?? null,
          modelId: admission.modelId,
          threshold: admission.threshold,
          score: admission.score
        }
      })
      if (chosen !== undefined && outcome.decision === "granted") yield* sink.recorded(admission)
      return { admission, replayed: false }
    })

  const admit = (scan: Scan) =>
    Effect.gen(function*() {
      const fingerprint = scanFingerprint(scan)
      const seen = yield* byNonce(scan.deviceId, scan.nonce)
      if (Option.isSome(seen)) return yield* replay(seen.value, scan, fingerprint)

      // A device acts only within its venue: another venue's event is not disclosed, nor written to.
      const venue = yield* directory.eventVenue(scan.eventId)
      if (Option.isNone(venue) || venue.value !== scan.venueId) return yield* new EventNotFound({ id: scan.eventId })

      // Identification is in-memory work on the matching component: done before any lock is held.
      const identified = scan.target._tag === "Probe"
        ? Option.some(yield* directory.identify(scan, scan.eventId, scan.target.probe))
        : Option.none<Identification>()

      return yield* sql.withTransaction(Effect.gen(function*() {
        // Copies of one scan with different idempotency keys queue here; the second finds the first.
        yield* sql`SELECT pg_advisory_xact_lock(hashtextextended(${`admission:${scan.deviceId}:${scan.nonce}`}, 0))`
        const first = yield* byNonce(scan.deviceId, scan.nonce)
        if (Option.isSome(first)) return yield* replay(first.value, scan, fingerprint)
        return yield* record(scan, fingerprint, identified)
      }))
    }).pipe(Effect.withSpan("Admission.admit"))

  const list = (
    eventId: string,
    options: { readonly after: number; readonly limit: number; readonly flaggedOnly: boolean }
  ) =>
    Effect.gen(function*() {
      const rows = yield* sql<AdmissionRow>`
        SELECT * FROM admissions
        WHERE event_id = ${eventId} AND id > ${options.after}
          ${options.flaggedOnly ? sql`AND flagged IS NOT NULL` : sql``}
        ORDER BY id
        LIMIT ${options.limit + 1}
      `
      const page = rows.slice(0, options.limit)
      const ids = page.map((r) => r.id)
      const conflicts = ids.length === 0 ? [] : yield* sql<{
        id: number
        admission_id: number
        ticket_id: string | null
        reason: Reason
        earlier_id: number | null
        detected_at: Date
      }>`SELECT * FROM admission_conflicts WHERE admission_id IN ${sql.in(ids)} ORDER BY id`
      return {
        admissions: page.map(toAdmission),
        conflicts: conflicts.map((c) =>
          new Conflict({
            conflictId: c.id,
            admissionId: c.admission_id,
            ticketId: c.ticket_id,
            reason: c.reason,
            earlierAdmissionId: c.earlier_id,
            detectedAt: c.detected_at
          })
        ),
        next: rows.length > options.limit ? page[page.length - 1]!.id : null
      }
    }).pipe(Effect.withSpan("Admission.list"))

  return { admit, list, checkInList, configureList } satisfies AdmissionsShape
})

/** Gate admission: check-in lists, decisions from synced tickets, offline facts and conflicts. */
export class Admissions extends Context.Tag("gatehouse/Admissions")<Admissions, AdmissionsShape>() {
  static readonly layer = Layer.effect(Admissions, make)
}
