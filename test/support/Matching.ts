import { SqlClient } from "@effect/sql"
import { Effect, Either, Layer } from "effect"
import * as Crypto from "node:crypto"
import { encodeGalleryChange, galleryChannel } from "../../src/domain/GalleryChange.js"
import { prepareTemplate } from "../../src/domain/Template.js"
import { Secrets } from "../../src/layers/Secrets.js"
import { TemplateVault } from "../../src/services/TemplateVault.js"

/**
 * Fixtures for matching tests: people written straight into the identity tables through the
 * template vault (sealed as enrollment seals them), and the announcements enrollment makes.
 */

const VaultLive = TemplateVault.layer.pipe(Layer.provide(Secrets.layerTest))

export interface TestTemplate {
  readonly modelId: string
  readonly vector: ReadonlyArray<number>
}

/** A person of `venueId` with active consent and these templates; no announcement is sent. */
export const enrollDirect = (venueId: string, templates: ReadonlyArray<TestTemplate>, personId = Crypto.randomUUID()) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const vault = yield* TemplateVault
    const prepared = templates.map((t) => ({
      templateId: Crypto.randomUUID(),
      modelId: t.modelId,
      vector: Either.getOrThrow(prepareTemplate(t.modelId, t.vector)).vector
    }))
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO people (id, venue_id, consent_state) VALUES (${personId}, ${venueId}, 'active')`
      yield* vault.createKey(personId)
      yield* vault.store(personId, null, prepared)
    }))
    return personId
  }).pipe(Effect.provide(VaultLive), Effect.orDie)

/** What enrollment sends in the transaction that changes a person. */
export const announce = (personId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql`SELECT pg_notify(${galleryChannel}, ${encodeGalleryChange({ kind: "person", personId })})`
  ).pipe(Effect.orDie)

/** Withdraws consent directly; `notify` also announces it, as enrollment does. */
export const withdrawDirect = (personId: string, notify: boolean) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.withTransaction(Effect.gen(function*() {
      yield* sql`UPDATE people SET consent_state = 'withdrawn', consent_changed_at = now() WHERE id = ${personId}`
      if (notify) yield* announce(personId)
    }))).pipe(Effect.orDie)

/** A vector of `dimension` values pointing mostly along axis `axis`. */
export const axis = (dimension: number, index: number, noise = 0) =>
  Array.from({ length: dimension }, (_, i) => (i === index ? 1 : noise * Math.sin(i + index)))
