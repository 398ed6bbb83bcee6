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

/** An event appended inside `collect`, held in memory until `appendAll` writes it. */
export interface PendingEvent {
  readonly messageId: string
  readonly topic: string
  /** JSON text. */
  readonly payload: string
}

/** Where `append` puts events while a `collect` runs on the fiber. */
class PendingEvents extends Context.Tag("gatehouse/Outbox/PendingEvents")<PendingEvents, Array<PendingEvent>>() {}

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
   * Runs `effect` with its appends held in memory instead of written, and returns them beside its
   * result; a failed `effect` returns nothing, so its events are dropped with its writes. The
   * caller writes the events it keeps with `appendAll` in the same transaction, before it commits.
   * Group commit uses it to write the events of a whole batch of messages in one statement.
   */
  readonly collect: <A, E, R>(
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<readonly [A, ReadonlyArray<PendingEvent>], E, R>
  /**
   * Writes events in the caller's transaction, in order, with one statement and one wake-up of
   * the relays at commit. Dies outside a transaction, like `append`.
   */
  readonly appendAll: (events: ReadonlyArray<PendingEvent>) => Effect.Effect<void, SqlError>
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

    const outsideTransaction = Effect.map(
      Effect.serviceOption(SqlClient.TransactionConnection),
      Option.isNone
    )

    const append = (topic: string, payload: unknown, options: AppendOptions = {}) =>
      Effect.gen(function*() {
        if (yield* outsideTransaction) return yield* Effect.dieMessage("Outbox.append must run inside a transaction")
        const messageId = options.messageId ?? Crypto.randomUUID()
        const pending = yield* Effect.serviceOption(PendingEvents)
        if (Option.isSome(pending)) {
          pending.value.push({ messageId, topic, payload: JSON.stringify(payload ?? null) })
          return messageId
        }
        yield* sql`
          WITH appended AS (
            INSERT INTO outbox (message_id, topic, payload)
            VALUES (${messageId}, ${topic}, ${JSON.stringify(payload ?? null)}::jsonb)
            RETURNING id
          )
          SELECT pg_notify(${channels.outbox}, 'appended') FROM appended
        `
        return messageId
      }).pipe(Effect.withSpan("Outbox.append", { attributes: { topic }, captureStackTrace: false }))

    const collect = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.suspend(() => {
        const events: Array<PendingEvent> = []
        return Effect.map(
          Effect.provideService(effect, PendingEvents, events),
          (a) => [a, events] as const
        )
      })

    const appendAll = (events: ReadonlyArray<PendingEvent>) =>
      Effect.gen(function*() {
        if (events.length === 0) return
        if (yield* outsideTransaction) return yield* Effect.dieMessage("Outbox.appendAll must run inside a transaction")
        yield* sql`
          WITH appended AS (
            INSERT INTO outbox (message_id, topic, payload)
            SELECT e.message_id, e.topic, e.payload::jsonb
            FROM unnest(
              ${events.map((e) => e.messageId)}::text[],
              ${events.map((e) => e.topic)}::text[],
              ${events.map((e) => e.payload)}::text[]
            ) WITH ORDINALITY AS e(message_id, topic, payload, ord)
            ORDER BY e.ord
            RETURNING id
          )
          SELECT pg_notify(${channels.outbox}, 'appended') WHERE EXISTS (SELECT 1 FROM appended)
        `
      }).pipe(Effect.withSpan("Outbox.appendAll", { attributes: { events: events.length }, captureStackTrace: false }))

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

    return { append, collect, appendAll, claimDue, remove, reschedule, park } satisfies OutboxShape
  })

  static readonly layer = Layer.effect(Outbox, Outbox.make)
}
