import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Option } from "effect"
import * as Crypto from "node:crypto"
import { channels } from "./Listener.js"

export interface AppendOptions {
  /**
   * The message id consumers de-duplicate on (their inbox key). Default: a random UUID. Give a
   * deterministic one when the same event could be appended by two runs of the same work.
   */
  readonly messageId?: string | undefined
}

/** An outbox row as the relay hands it to a destination. */
export interface OutboxRow {
  readonly id: number
  readonly messageId: string
  readonly topic: string
  /** The payload as JSON text, ready to be sent on as is. */
  readonly payload: string
  /** Failed delivery attempts so far. */
  readonly attempts: number
}

export interface OutboxFailure {
  readonly id: number
  readonly error: string
}

export interface OutboxShape {
  /**
   * Appends an event in the caller's transaction: it is delivered if and only if the transaction
   * commits. Dies when called outside a transaction, where the event could outlive or precede the
   * state change that causes it. Returns the message id. Payloads must never carry template
   * vectors or other biometric data: outbox rows and dead letters are readable by operators.
   */
  readonly append: (topic: string, payload: unknown, options?: AppendOptions) => Effect.Effect<string, SqlError>
  /**
   * For the relay, inside its transaction: locks up to `limit` rows due for delivery, oldest due
   * first, skipping rows another relay holds. Progress is the rows' own state, never a cursor,
   * so a row whose transaction committed late is found like any other.
   */
  readonly claimDue: (limit: number) => Effect.Effect<ReadonlyArray<OutboxRow>, SqlError>
  /** For the relay: removes delivered rows. */
  readonly remove: (ids: ReadonlyArray<number>) => Effect.Effect<void, SqlError>
  /** For the relay: counts a failed attempt and schedules the next one. */
  readonly reschedule: (
    failures: ReadonlyArray<OutboxFailure & { readonly delayMs: number }>
  ) => Effect.Effect<void, SqlError>
  /** For the relay: moves rows that ran out of attempts to the dead letters with their last error. */
  readonly park: (failures: ReadonlyArray<OutboxFailure>) => Effect.Effect<void, SqlError>
}

/** The transactional outbox: events that leave a transaction only if it commits. */
export class Outbox extends Context.Tag("gatehouse/Outbox")<Outbox, OutboxShape>() {
  static readonly make = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const append = (topic: string, payload: unknown, options: AppendOptions = {}) =>
      Effect.gen(function*() {
        if (Option.isNone(yield* Effect.serviceOption(SqlClient.TransactionConnection))) {
          return yield* Effect.dieMessage("Outbox.append must run inside a transaction")
        }
        const messageId = options.messageId ?? Crypto.randomUUID()
        yield* sql`
          WITH appended AS (
            INSERT INTO outbox (message_id, topic, payload)
            VALUES (${messageId}, ${topic}, ${JSON.stringify(payload ?? null)}::jsonb)
            RETURNING id
          )
          SELECT pg_notify(${channels.outbox}, 'appended') FROM appended
        `
        return messageId
      }).pipe(Effect.withSpan("Outbox.append", { attributes: { topic } }))

    const claimDue = (limit: number) =>
      sql<OutboxRow>`
        SELECT id, message_id AS "messageId", topic, payload::text AS payload, attempts
        FROM outbox
        WHERE next_attempt_at <= now()
        ORDER BY next_attempt_at, id
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      `

    const remove = (ids: ReadonlyArray<number>) =>
      ids.length === 0 ? Effect.void : Effect.asVoid(sql`DELETE FROM outbox WHERE id = ANY(${ids}::bigint[])`)

    const reschedule = (failures: ReadonlyArray<OutboxFailure & { readonly delayMs: number }>) =>
      failures.length === 0 ? Effect.void : Effect.asVoid(sql`
        UPDATE outbox AS o
        SET attempts = o.attempts + 1, last_error = f.error,
            next_attempt_at = now() + f.delay_ms * interval '1 millisecond'
        FROM unnest(
          ${failures.map((f) => f.id)}::bigint[],
          ${failures.map((f) => f.error)}::text[],
          ${failures.map((f) => f.delayMs)}::float8[]
        ) AS f(id, error, delay_ms)
        WHERE o.id = f.id
      `)

    const park = (failures: ReadonlyArray<OutboxFailure>) =>
      failures.length === 0 ? Effect.void : Effect.asVoid(sql`
        WITH parked AS (
          DELETE FROM outbox USING unnest(
            ${failures.map((f) => f.id)}::bigint[],
            ${failures.map((f) => f.error)}::text[]
          ) AS f(id, error)
          WHERE outbox.id = f.id
          RETURNING outbox.*, f.error
        )
        INSERT INTO dead_letters (source, topic, message_id, payload, attempts, last_error, created_at)
        SELECT 'outbox', topic, message_id, payload, attempts + 1, error, created_at FROM parked
      `)

    return { append, claimDue, remove, reschedule, park } satisfies OutboxShape
  })

  static readonly layer = Layer.effect(Outbox, Outbox.make)
}
