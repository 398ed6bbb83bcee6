import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Data, Effect, Layer, Redacted } from "effect"
import * as Crypto from "node:crypto"
import { bytesToVector, vectorToBytes } from "../domain/Template.js"
import { Secrets } from "../layers/Secrets.js"

/** A sealed blob failed authentication: tampered, or sealed under another key. */
export class SealBroken extends Data.TaggedError("SealBroken")<{ readonly what: string }> {}

/** A template ready to be sealed: already validated and normalised. */
export interface TemplateToStore {
  readonly templateId: string
  readonly modelId: string
  readonly vector: Float32Array
}

/** A decrypted template, for galleries. */
export interface OpenTemplate {
  readonly personId: string
  readonly templateId: string
  readonly modelId: string
  readonly vector: Float32Array
}

export interface TemplateMetadata {
  readonly templateId: string
  readonly modelId: string
  readonly dimension: number
  readonly createdAt: Date
}

// Sealed layout: version (1 byte) | IV (12) | GCM tag (16) | ciphertext.
const version = 1
const ivBytes = 12
const tagBytes = 16

const seal = (key: Buffer, aad: string, plaintext: Buffer): Buffer => {
  const iv = Crypto.randomBytes(ivBytes)
  const cipher = Crypto.createCipheriv("aes-256-gcm", key, iv)
  cipher.setAAD(Buffer.from(aad, "utf8"))
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return Buffer.concat([Buffer.of(version), iv, cipher.getAuthTag(), body])
}

const open = (key: Buffer, aad: string, sealed: Uint8Array): Buffer | undefined => {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength)
  if (bytes.length < 1 + ivBytes + tagBytes || bytes[0] !== version) return undefined
  try {
    const decipher = Crypto.createDecipheriv("aes-256-gcm", key, bytes.subarray(1, 1 + ivBytes))
    decipher.setAAD(Buffer.from(aad, "utf8"))
    decipher.setAuthTag(bytes.subarray(1 + ivBytes, 1 + ivBytes + tagBytes))
    return Buffer.concat([decipher.update(bytes.subarray(1 + ivBytes + tagBytes)), decipher.final()])
  } catch {
    return undefined
  }
}

// The additional data binds each blob to its place: a sealed template copied onto another
// person or model, or a key copied onto another person, fails to open.
const keyAad = (personId: string) => `gatehouse:person-key:v1:${personId}`
const templateAad = (personId: string, templateId: string, modelId: string) =>
  `gatehouse:template:v1:${personId}:${templateId}:${modelId}`

interface SealedRow {
  readonly personId: string
  readonly templateId: string
  readonly modelId: string
  readonly sealed: Uint8Array
  readonly wrappedKey: Uint8Array
}

export interface TemplateVaultShape {
  /** Creates and stores the person's data key, wrapped by the master key. Does nothing if one exists. */
  readonly createKey: (personId: string) => Effect.Effect<void, SqlError>
  /** Seals templates with the person's data key and stores them (in the caller's transaction). */
  readonly store: (
    personId: string,
    deviceId: string | null,
    templates: ReadonlyArray<TemplateToStore>
  ) => Effect.Effect<void, SqlError>
  /** Deletes the person's templates and destroys their data key. */
  readonly destroy: (personId: string) => Effect.Effect<void, SqlError>
  readonly metadata: (personId: string) => Effect.Effect<ReadonlyArray<TemplateMetadata>, SqlError>
  readonly count: (personId: string) => Effect.Effect<number, SqlError>
  /**
   * Decrypted templates of everyone in an event's gallery (`event_gallery`), optionally of one
   * model, ordered by person then template. A template that fails to open is skipped and logged.
   */
  readonly forGallery: (
    eventId: string,
    options?: { readonly modelId?: string }
  ) => Effect.Effect<ReadonlyArray<OpenTemplate>, SqlError>
  /** Decrypted templates of the given people (for refreshing a gallery after a change). */
  readonly forPeople: (personIds: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<OpenTemplate>, SqlError>
}

/**
 * This process's MASTER_KEY is not the key the database's templates were sealed with: every
 * instance sharing a database must be given the same MASTER_KEY.
 */
export class MasterKeyMismatch extends Data.TaggedError("MasterKeyMismatch")<{}> {
  override get message() {
    return "MASTER_KEY differs from the key this database's templates are sealed with; " +
      "give every instance that shares the database the same MASTER_KEY"
  }
}

/**
 * Template vectors encrypted at rest: AES-256-GCM under a per-person data key, itself wrapped
 * (AES-256-GCM) by the master key from `Secrets`. Owns `templates` and `person_keys`.
 */
export class TemplateVault extends Context.Tag("gatehouse/TemplateVault")<TemplateVault, TemplateVaultShape>() {
  static readonly layer = Layer.effect(
    TemplateVault,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const masterKey = Redacted.value((yield* Secrets).masterKey)

      // The first instance records the key's check value; every later one must have the same key.
      const check = Crypto.createHmac("sha256", masterKey).update("gatehouse master key check").digest("hex")
      yield* sql`INSERT INTO master_key_check (id, check_value) VALUES (1, ${check}) ON CONFLICT (id) DO NOTHING`
      const [recorded] = yield* sql<{ check: string }>`SELECT check_value AS check FROM master_key_check WHERE id = 1`
      if (recorded !== undefined && recorded.check !== check) return yield* new MasterKeyMismatch()

      const unwrap = (personId: string, wrapped: Uint8Array) =>
        Effect.suspend(() => {
          const key = open(masterKey, keyAad(personId), wrapped)
          return key === undefined || key.length !== 32
            ? Effect.fail(new SealBroken({ what: "person key" }))
            : Effect.succeed(key)
        })

      const dataKey = (personId: string) =>
        Effect.flatMap(
          sql<{ wrappedKey: Uint8Array }>`
            SELECT wrapped_key AS "wrappedKey" FROM person_keys WHERE person_id = ${personId}
          `,
          (rows) =>
            rows[0] === undefined
              ? Effect.dieMessage(`person ${personId} has no data key`)
              : Effect.orDie(unwrap(personId, rows[0].wrappedKey))
        )

      const createKey = (personId: string) =>
        Effect.suspend(() => {
          const wrapped = seal(masterKey, keyAad(personId), Crypto.randomBytes(32))
          return sql`
            INSERT INTO person_keys (person_id, wrapped_key) VALUES (${personId}, ${wrapped})
            ON CONFLICT (person_id) DO NOTHING
          `
        }).pipe(Effect.asVoid, Effect.withSpan("TemplateVault.createKey"))

      const store = (personId: string, deviceId: string | null, templates: ReadonlyArray<TemplateToStore>) =>
        Effect.gen(function*() {
          if (templates.length === 0) return
          const key = yield* dataKey(personId)
          const rows = templates.map((t) => ({
            id: t.templateId,
            person_id: personId,
            model_id: t.modelId,
            dimension: t.vector.length,
            sealed: seal(key, templateAad(personId, t.templateId, t.modelId), vectorToBytes(t.vector)),
            device_id: deviceId
          }))
          yield* sql`INSERT INTO templates ${sql.insert(rows)}`
        }).pipe(Effect.withSpan("TemplateVault.store"))

      const destroy = (personId: string) =>
        Effect.zipRight(
          sql`DELETE FROM templates WHERE person_id = ${personId}`,
          sql`DELETE FROM person_keys WHERE person_id = ${personId}`
        ).pipe(Effect.asVoid, Effect.withSpan("TemplateVault.destroy"))

      const metadata = (personId: string) =>
        sql<TemplateMetadata>`
          SELECT id AS "templateId", model_id AS "modelId", dimension, created_at AS "createdAt"
          FROM templates WHERE person_id = ${personId}
          ORDER BY created_at, id
        `

      const count = (personId: string) =>
        Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM templates WHERE person_id = ${personId}`,
          (rows) => rows[0]?.n ?? 0
        )

      const openRows = (rows: ReadonlyArray<SealedRow>) =>
        Effect.gen(function*() {
          const out: Array<OpenTemplate> = []
          let lastPerson: string | undefined
          let key: Buffer | undefined
          for (const row of rows) {
            if (row.personId !== lastPerson) {
              lastPerson = row.personId
              key = open(masterKey, keyAad(row.personId), row.wrappedKey)
            }
            const plain = key === undefined
              ? undefined
              : open(key, templateAad(row.personId, row.templateId, row.modelId), row.sealed)
            if (plain === undefined) {
              yield* Effect.logError("template cannot be opened, skipped").pipe(
                Effect.annotateLogs({ component: "identity", templateId: row.templateId })
              )
              continue
            }
            out.push({
              personId: row.personId,
              templateId: row.templateId,
              modelId: row.modelId,
              vector: bytesToVector(plain)
            })
          }
          return out
        })

      const forGallery = (eventId: string, options: { readonly modelId?: string } = {}) =>
        sql<SealedRow>`
          SELECT t.person_id AS "personId", t.id AS "templateId", t.model_id AS "modelId", t.sealed,
                 k.wrapped_key AS "wrappedKey"
          FROM (SELECT DISTINCT person_id FROM event_gallery WHERE event_id = ${eventId}) g
          JOIN templates t ON t.person_id = g.person_id
          JOIN person_keys k ON k.person_id = t.person_id
          WHERE ${options.modelId === undefined ? sql`true` : sql`t.model_id = ${options.modelId}`}
          ORDER BY t.person_id, t.id
        `.pipe(Effect.flatMap(openRows), Effect.withSpan("TemplateVault.forGallery"))

      const forPeople = (personIds: ReadonlyArray<string>) =>
        personIds.length === 0 ? Effect.succeed([]) : sql<SealedRow>`
          SELECT t.person_id AS "personId", t.id AS "templateId", t.model_id AS "modelId", t.sealed,
                 k.wrapped_key AS "wrappedKey"
          FROM templates t
          JOIN person_keys k ON k.person_id = t.person_id
          WHERE t.person_id IN ${sql.in(personIds)}
          ORDER BY t.person_id, t.id
        `.pipe(Effect.flatMap(openRows), Effect.withSpan("TemplateVault.forPeople"))

      return { createKey, store, destroy, metadata, count, forGallery, forPeople }
    })
  )
}
