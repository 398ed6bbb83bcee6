import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Either, Layer } from "effect"
import * as Crypto from "node:crypto"
import { encodeGalleryChange, galleryChannel } from "../domain/GalleryChange.js"
import {
  ConsentNotActive,
  ExternalRefTaken,
  PersonAlreadyEnrolled,
  PersonErased,
  PersonIdUnavailable,
  PersonNotFound,
  TemplateInvalid,
  TemplateLimitReached
} from "../domain/Identity.js"
import { prepareTemplate } from "../domain/Template.js"
import { AppConfig } from "../layers/Config.js"
import { Audit } from "./Audit.js"
import { isUniqueViolation } from "./Database.js"
import { Inbox } from "./Inbox.js"
import { type TemplateMetadata, type TemplateToStore, TemplateVault } from "./TemplateVault.js"
import { Tickets } from "./Tickets.js"

export interface ConsentGrant {
  readonly purposes: ReadonlyArray<string>
  readonly noticeVersion: string
  readonly jurisdiction: string
  /** How consent was collected (e.g. "kiosk-signature", "app-checkbox"). */
  readonly method: string
  /** When the person gave consent, by the device's clock. */
  readonly givenAt: Date
  /** When the consent ends by its own terms, if it does. */
  readonly expiresAt?: Date | undefined
}

export type ConsentChange =
  | ({ readonly state: "granted" } & ConsentGrant)
  | { readonly state: "withdrawn"; readonly method: string; readonly givenAt: Date }

export interface TemplateInput {
  readonly modelId: string
  readonly vector: ReadonlyArray<number>
}

export interface ConsentRecord {
  readonly state: "granted" | "withdrawn"
  readonly purposes: ReadonlyArray<string>
  readonly noticeVersion: string
  readonly jurisdiction: string
  readonly method: string
  readonly givenAt: Date
  readonly expiresAt: Date | null
  readonly recordedAt: Date
}

export interface Person {
  readonly personId: string
  readonly venueId: string
  readonly externalRef: string | null
  /** `active` while consent is granted and unexpired: only then is the person in galleries. */
  readonly status: "active" | "withdrawn" | "expired"
  readonly createdAt: Date
  readonly lastInteractionAt: Date
  /** When the retention job erases the person unless something happens before. */
  readonly retainUntil: Date
  readonly consent: ConsentRecord
  readonly consentHistory: ReadonlyArray<ConsentRecord>
  readonly templates: ReadonlyArray<TemplateMetadata>
}

export interface Erasure {
  readonly personId: string
  readonly status: "erased"
  readonly erasedAt: Date
}

/** Who acts: a device for its venue, or an admin (`venueId` undefined) for every venue. */
export interface Actor {
  readonly venueId: string | undefined
  readonly deviceId: string | undefined
}

export interface EnrollInput {
  readonly personId: string
  readonly externalRef?: string | undefined
  readonly consent: ConsentGrant
  readonly templates: ReadonlyArray<TemplateInput>
}

export interface EnrollmentShape {
  /**
   * Enrolls a person of the actor's venue under a client-chosen id. All or nothing: a refused
   * template leaves no trace. An erased id is refused (`PersonErased`), an id in use by another
   * venue is unavailable, an enrolled one is `PersonAlreadyEnrolled`.
   */
  readonly enroll: (
    actor: Actor & { readonly venueId: string },
    input: EnrollInput
  ) => Effect.Effect<
    Person,
    | PersonErased
    | PersonIdUnavailable
    | PersonAlreadyEnrolled
    | ExternalRefTaken
    | TemplateInvalid
    | TemplateLimitReached
    | SqlError
  >
  /** Adds templates to a person whose consent is active, up to the cap. */
  readonly addTemplates: (
    actor: Actor,
    personId: string,
    templates: ReadonlyArray<TemplateInput>
  ) => Effect.Effect<
    { readonly personId: string; readonly templates: ReadonlyArray<TemplateMetadata> },
    PersonNotFound | PersonErased | ConsentNotActive | TemplateInvalid | TemplateLimitReached | SqlError
  >
  /** Appends to the consent history; withdrawal takes the person out of every gallery in the same commit. */
  readonly recordConsent: (
    actor: Actor,
    personId: string,
    change: ConsentChange
  ) => Effect.Effect<Person, PersonNotFound | PersonErased | SqlError>
  readonly get: (actor: Actor, personId: string) => Effect.Effect<Person, PersonNotFound | PersonErased | SqlError>
  /**
   * Erases a person: templates, data key, consent history and guest entries go, a tombstone
   * without personal data stays. Idempotent: erasing again answers the first erasure. An id that
   * was never enrolled gets a tombstone too, so an enrollment delivered after its erasure is refused.
   */
  readonly erase: (actor: Actor, personId: string) => Effect.Effect<Erasure, PersonNotFound | SqlError>
  /**
   * Validates templates without touching the database (the checks `enroll` and `addTemplates`
   * make first). Lets callers refuse a bad vector before anything fingerprints the request.
   */
  readonly checkTemplates: (templates: ReadonlyArray<TemplateInput>) => Effect.Effect<void, TemplateInvalid>
  /** Whether the id was erased, and when; for refusing redelivered messages before replaying them. */
  readonly erasedAt: (actor: Actor, personId: string) => Effect.Effect<Date | undefined, SqlError>
  /** Marks people as seen (identified, admitted): it moves their retention date. */
  readonly recordInteraction: (personIds: ReadonlyArray<string>) => Effect.Effect<void, SqlError>
  /** Erases up to `RETENTION_BATCH_SIZE` people past their retention date; returns how many. */
  readonly retentionPass: Effect.Effect<number, SqlError>
}

interface PersonRow {
  readonly personId: string
  readonly venueId: string
  readonly externalRef: string | null
  readonly status: "active" | "withdrawn" | "expired"
  readonly createdAt: Date
  readonly lastInteractionAt: Date
  readonly retainUntil: Date
}

/** Enrollment and consent: owns people, consent history and tombstones. */
export class Enrollment extends Context.Tag("gatehouse/Enrollment")<Enrollment, EnrollmentShape>() {
  static readonly layer = Layer.effect(
    Enrollment,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const vault = yield* TemplateVault
      const audit = yield* Audit
      const tickets = yield* Tickets
      const inbox = yield* Inbox
      const config = yield* AppConfig
      const cap = config.maxTemplatesPerPerson

      // Every change to one person takes this lock first, so enrollment, erasure and consent
      // changes of one id are serialised across instances; no unique violation reaches callers.
      const lockPerson = (personId: string) =>
        sql`SELECT pg_advisory_xact_lock(hashtextextended(${`gatehouse:person:${personId}`}, 0))`

      const notify = (personId: string) =>
        sql`SELECT pg_notify(${galleryChannel}, ${encodeGalleryChange({ kind: "person", personId })})`

      const retainUntil = sql`
        LEAST(
          p.last_interaction_at + make_interval(days => ${config.personRetentionDays}),
          p.consent_expires_at + make_interval(hours => ${config.consentWithdrawnRetentionHours}),
          CASE WHEN p.consent_state = 'withdrawn'
            THEN p.consent_changed_at + make_interval(hours => ${config.consentWithdrawnRetentionHours}) END
        )
      `

      const prepare = (templates: ReadonlyArray<TemplateInput>) =>
        Effect.forEach(templates, (t, index) =>
          Either.match(prepareTemplate(t.modelId, t.vector), {
            onLeft: (problem) => Effect.fail(new TemplateInvalid({ index, ...problem })),
            onRight: ({ model, vector }): Effect.Effect<TemplateToStore> =>
              Effect.succeed({ templateId: Crypto.randomUUID(), modelId: model.id, vector })
          }))

      const tombstone = (personId: string) =>
        Effect.map(
          sql<{ venueId: string; erasedAt: Date }>`
            SELECT venue_id AS "venueId", erased_at AS "erasedAt" FROM tombstones WHERE person_id = ${personId}
          `,
          (rows) => rows[0]
        )

      const visible = (actor: Actor, venueId: string) => actor.venueId === undefined || actor.venueId === venueId

      /** The person as the actor may see them, or why not. Call with the person locked. */
      const resolve = (actor: Actor, personId: string) =>
        Effect.gen(function*() {
          const rows = yield* sql<PersonRow>`
            SELECT p.id AS "personId", p.venue_id AS "venueId", p.external_ref AS "externalRef",
                   CASE WHEN p.consent_state = 'withdrawn' THEN 'withdrawn'
                        WHEN p.consent_expires_at IS NOT NULL AND p.consent_expires_at <= now() THEN 'expired'
                        ELSE 'active' END AS status,
                   p.created_at AS "createdAt", p.last_interaction_at AS "lastInteractionAt",
                   ${retainUntil} AS "retainUntil"
            FROM people p WHERE p.id = ${personId}
          `
          const row = rows[0]
          if (row !== undefined && visible(actor, row.venueId)) return row
          if (row !== undefined) return yield* new PersonNotFound({ id: personId })
          const erased = yield* tombstone(personId)
          if (erased !== undefined && visible(actor, erased.venueId)) {
            return yield* new PersonErased({ personId, erasedAt: erased.erasedAt })
          }
          return yield* new PersonNotFound({ id: personId })
        })

      const history = (personId: string) =>
        sql<ConsentRecord>`
          SELECT state, purposes, notice_version AS "noticeVersion", jurisdiction, method,
                 given_at AS "givenAt", expires_at AS "expiresAt", recorded_at AS "recordedAt"
          FROM consent_records WHERE person_id = ${personId} ORDER BY id
        `

      const view = (row: PersonRow) =>
        Effect.gen(function*() {
          const consentHistory = yield* history(row.personId)
          const templates = yield* vault.metadata(row.personId)
          return { ...row, consent: consentHistory[consentHistory.length - 1]!, consentHistory, templates } as Person
        })

      const insertConsent = (
        personId: string,
        deviceId: string | undefined,
        record: Omit<ConsentRecord, "recordedAt">
      ) =>
        sql`
          INSERT INTO consent_records
            (person_id, state, purposes, notice_version, jurisdiction, method, given_at, expires_at, device_id)
          VALUES (${personId}, ${record.state}, ARRAY(SELECT jsonb_array_elements_text(${
          JSON.stringify(record.purposes)
        }::jsonb)), ${record.noticeVersion},
                  ${record.jurisdiction}, ${record.method}, ${record.givenAt}, ${record.expiresAt}, ${deviceId ?? null})
        `

      const enroll = (actor: Actor & { readonly venueId: string }, input: EnrollInput) =>
        Effect.gen(function*() {
          const templates = yield* prepare(input.templates)
          if (templates.length > cap) return yield* new TemplateLimitReached({ personId: input.personId, limit: cap })

          return yield* sql.withTransaction(Effect.gen(function*() {
            yield* lockPerson(input.personId)
            const erased = yield* tombstone(input.personId)
            if (erased !== undefined) {
              return yield* erased.venueId === actor.venueId
                ? new PersonErased({ personId: input.personId, erasedAt: erased.erasedAt })
                : new PersonIdUnavailable({ personId: input.personId })
            }
            const existing = yield* sql<{ venueId: string }>`
              SELECT venue_id AS "venueId" FROM people WHERE id = ${input.personId}
            `
            if (existing[0] !== undefined) {
              return yield* existing[0].venueId === actor.venueId
                ? new PersonAlreadyEnrolled({ personId: input.personId })
                : new PersonIdUnavailable({ personId: input.personId })
            }

            const externalRef = input.externalRef ?? null
            yield* sql`
              INSERT INTO people (id, venue_id, external_ref, consent_state, consent_expires_at, enrolled_by)
              VALUES (${input.personId}, ${actor.venueId}, ${externalRef}, 'active',
                      ${input.consent.expiresAt ?? null}, ${actor.deviceId ?? null})
            `.pipe(
              Effect.catchIf(
                (e) => isUniqueViolation(e) && externalRef !== null,
                () => new ExternalRefTaken({ externalRef: externalRef! })
              )
            )
            yield* insertConsent(input.personId, actor.deviceId, {
              state: "granted",
              ...input.consent,
              expiresAt: input.consent.expiresAt ?? null
            })
            yield* vault.createKey(input.personId)
            yield* vault.store(input.personId, actor.deviceId ?? null, templates)

            const ids = { venueId: actor.venueId, deviceId: actor.deviceId, personId: input.personId }
            yield* audit.record({
              action: "person.enrolled",
              ...ids,
              details: {
                templateIds: templates.map((t) => t.templateId),
                modelIds: [...new Set(templates.map((t) => t.modelId))]
              }
            })
            yield* audit.record({
              action: "consent.granted",
              ...ids,
              details: {
                purposes: input.consent.purposes,
                noticeVersion: input.consent.noticeVersion,
                jurisdiction: input.consent.jurisdiction,
                method: input.consent.method
              }
            })
            yield* notify(input.personId)
            // Tickets synced before the person enrolled carry their reference: link them now, not at the next sync.
            if (externalRef !== null) yield* tickets.linkHolder(input.personId)
            return yield* view(yield* Effect.orDie(resolve(actor, input.personId)))
          }))
        }).pipe(Effect.withSpan("Enrollment.enroll"))

      const addTemplates = (actor: Actor, personId: string, input: ReadonlyArray<TemplateInput>) =>
        Effect.gen(function*() {
          const templates = yield* prepare(input)
          return yield* sql.withTransaction(Effect.gen(function*() {
            yield* lockPerson(personId)
            const person = yield* resolve(actor, personId)
            if (person.status !== "active") return yield* new ConsentNotActive({ personId })
            const held = yield* vault.count(personId)
            if (held + templates.length > cap) return yield* new TemplateLimitReached({ personId, limit: cap })

            yield* vault.store(personId, actor.deviceId ?? null, templates)
            yield* sql`UPDATE people SET last_interaction_at = now() WHERE id = ${personId}`
            yield* audit.record({
              action: "template.added",
              venueId: person.venueId,
              deviceId: actor.deviceId,
              personId,
              details: {
                templateIds: templates.map((t) => t.templateId),
                modelIds: [...new Set(templates.map((t) => t.modelId))]
              }
            })
            yield* notify(personId)
            const added = new Set(templates.map((t) => t.templateId))
            const all = yield* vault.metadata(personId)
            return { personId, templates: all.filter((t) => added.has(t.templateId)) }
          }))
        }).pipe(Effect.withSpan("Enrollment.addTemplates"))

      const recordConsent = (actor: Actor, personId: string, change: ConsentChange) =>
        sql.withTransaction(Effect.gen(function*() {
          yield* lockPerson(personId)
          const person = yield* resolve(actor, personId)
          const latest = (yield* history(personId)).at(-1)!

          if (change.state === "granted") {
            yield* insertConsent(personId, actor.deviceId, { ...change, expiresAt: change.expiresAt ?? null })
            yield* sql`
              UPDATE people SET consent_state = 'active', consent_changed_at = now(),
                consent_expires_at = ${change.expiresAt ?? null}, last_interaction_at = now()
              WHERE id = ${personId}
            `
          } else {
            // A withdrawal ends the consent last given, whatever its purposes were.
            yield* insertConsent(personId, actor.deviceId, {
              state: "withdrawn",
              purposes: latest.purposes,
              noticeVersion: latest.noticeVersion,
              jurisdiction: latest.jurisdiction,
              method: change.method,
              givenAt: change.givenAt,
              expiresAt: null
            })
            yield* sql`
              UPDATE people SET consent_state = 'withdrawn', consent_changed_at = now(), last_interaction_at = now()
              WHERE id = ${personId}
            `
          }
          yield* audit.record({
            action: change.state === "granted" ? "consent.granted" : "consent.withdrawn",
            venueId: person.venueId,
            deviceId: actor.deviceId,
            personId,
            details: change.state === "granted"
              ? { purposes: change.purposes, noticeVersion: change.noticeVersion, jurisdiction: change.jurisdiction }
              : { method: change.method }
          })
          yield* notify(personId)
          return yield* view(yield* resolve(actor, personId))
        })).pipe(Effect.withSpan("Enrollment.recordConsent"))

      const get = (actor: Actor, personId: string) =>
        Effect.flatMap(resolve(actor, personId), view).pipe(Effect.withSpan("Enrollment.get"))

      /** Erasure of a locked person; `reason` says who asked. */
      const eraseLocked = (actor: Actor, personId: string, reason: "request" | "retention") =>
        Effect.gen(function*() {
          const erased = yield* tombstone(personId)
          if (erased !== undefined) {
            if (!visible(actor, erased.venueId)) return yield* new PersonNotFound({ id: personId })
            return { personId, status: "erased" as const, erasedAt: erased.erasedAt }
          }
          const rows = yield* sql<{ venueId: string }>`SELECT venue_id AS "venueId" FROM people WHERE id = ${personId}`
          const venueId = rows[0]?.venueId ?? actor.venueId
          if (venueId === undefined) return yield* new PersonNotFound({ id: personId })
          if (!visible(actor, venueId)) return yield* new PersonNotFound({ id: personId })

          yield* vault.destroy(personId)
          yield* sql`DELETE FROM people WHERE id = ${personId}`
          // Stored answers of messages about the person name them (reference, consent): they go too.
          const forgotten = yield* inbox.forgetSubject(personId)
          const [stone] = yield* sql<{ erasedAt: Date }>`
            INSERT INTO tombstones (person_id, venue_id, reason) VALUES (${personId}, ${venueId}, ${reason})
            RETURNING erased_at AS "erasedAt"
          `
          yield* audit.record({
            action: "person.erased",
            venueId,
            deviceId: actor.deviceId,
            personId,
            details: { reason, wasEnrolled: rows.length > 0, storedAnswersRemoved: forgotten }
          })
          if (rows.length > 0) yield* notify(personId)
          return { personId, status: "erased" as const, erasedAt: stone!.erasedAt }
        })

      const erase = (actor: Actor, personId: string) =>
        sql.withTransaction(Effect.zipRight(lockPerson(personId), eraseLocked(actor, personId, "request"))).pipe(
          Effect.withSpan("Enrollment.erase")
        )

      const erasedAt = (actor: Actor, personId: string) =>
        Effect.map(
          tombstone(personId),
          (erased) => erased !== undefined && visible(actor, erased.venueId) ? erased.erasedAt : undefined
        )

      const recordInteraction = (personIds: ReadonlyArray<string>) =>
        personIds.length === 0
          ? Effect.void
          : Effect.asVoid(sql`UPDATE people SET last_interaction_at = now() WHERE id IN ${sql.in(personIds)}`)

      const dueSql = sql`${retainUntil} <= now()`

      const retentionPass = Effect.gen(function*() {
        // Candidates are read without locks; each is then erased in its own transaction under
        // the person lock, after checking again that it is still due (consent may have come back).
        const due = yield* sql<{ id: string }>`
          SELECT p.id FROM people p WHERE ${dueSql} ORDER BY p.last_interaction_at LIMIT ${config.retentionBatchSize}
        `
        let erased = 0
        for (const { id } of due) {
          const done = yield* sql.withTransaction(Effect.gen(function*() {
            yield* lockPerson(id)
            const still = yield* sql`SELECT 1 FROM people p WHERE p.id = ${id} AND ${dueSql}`
            if (still.length === 0) return false
            yield* Effect.orDie(eraseLocked({ venueId: undefined, deviceId: undefined }, id, "retention"))
            return true
          }))
          if (done) erased++
        }
        return erased
      }).pipe(Effect.withSpan("Enrollment.retentionPass"))

      return {
        enroll,
        addTemplates,
        recordConsent,
        get,
        erase,
        checkTemplates: (templates: ReadonlyArray<TemplateInput>) => Effect.asVoid(prepare(templates)),
        erasedAt,
        recordInteraction,
        retentionPass
      }
    })
  )
}
