import { HttpApiSchema } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Context, Effect, Layer, Schema } from "effect"
import { retryTransient } from "./Database.js"
import { channels } from "./Listener.js"

/** A message that ran out of attempts (or was rejected), with the error that parked it. */
export const DeadLetter = Schema.Struct({
  id: Schema.Number,
  source: Schema.Literal("outbox", "queue").annotations({
    description: "outbox: the relay could not deliver it; queue: a consumer could not process it"
  }),
  queue: Schema.NullOr(Schema.String).annotations({ description: "The consumer, for a queue dead letter" }),
  topic: Schema.String,
  messageId: Schema.String,
  payload: Schema.Unknown,
  attempts: Schema.Number,
  lastError: Schema.String,
  createdAt: Schema.Date,
  parkedAt: Schema.Date
}).annotations({ identifier: "DeadLetter" })
export type DeadLetter = typeof DeadLetter.Type

export class DeadLetterNotFound extends Schema.TaggedError<DeadLetterNotFound>()(
  "DeadLetterNotFound",
  { id: Schema.Number },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `no dead letter ${this.id} (it may have been retried or discarded already)`
  }
}

export interface ListOptions {
  readonly limit: number
  /** Only dead letters with a smaller id: the `next` cursor of the previous page. */
  readonly before?: number | undefined
  readonly source?: "outbox" | "queue" | undefined
  readonly topic?: string | undefined
}

export interface DeadLettersShape {
  /** Newest first, with the total count matching the filters. */
  readonly list: (options: ListOptions) => Effect.Effect<{
    readonly items: ReadonlyArray<DeadLetter>
    readonly total: number
  }>
  readonly get: (id: number) => Effect.Effect<DeadLetter, DeadLetterNotFound>
  /**
   * Puts the message back where it was parked with fresh attempts: an outbox dead letter into
   * the outbox, a queue dead letter into its consumer's queue, keeping its message id so that the
   * consumer's inbox still recognises it. Removing the dead letter and requeueing are one
   * statement, so a retry happens once however often it is asked for.
   */
  readonly retry: (id: number) => Effect.Effect<{ readonly requeuedTo: "outbox" | "queue" }, DeadLetterNotFound>
  /** Drops a dead letter for good. */
  readonly discard: (id: number) => Effect.Effect<void, DeadLetterNotFound>
}

const columns = `id, source, queue, topic, message_id AS "messageId", payload, attempts,
  last_error AS "lastError", created_at AS "createdAt", parked_at AS "parkedAt"`

/** Dead letters of the outbox and the work queue: visible and recoverable by operators. */
export class DeadLetters extends Context.Tag("gatehouse/DeadLetters")<DeadLetters, DeadLettersShape>() {
  static readonly make = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const run = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.orDie(retryTransient(effect))

    const list = (options: ListOptions) =>
      Effect.gen(function*() {
        const filters = sql.and([
          ...(options.source === undefined ? [] : [sql`source = ${options.source}`]),
          ...(options.topic === undefined ? [] : [sql`topic = ${options.topic}`])
        ])
        const items = yield* sql<DeadLetter>`
          SELECT ${sql.literal(columns)} FROM dead_letters
          WHERE ${filters} AND id < ${options.before ?? Number.MAX_SAFE_INTEGER}
          ORDER BY id DESC
          LIMIT ${options.limit}
        `
        const [{ total }] = yield* sql<
          { total: number }
        >`SELECT count(*)::int AS total FROM dead_letters WHERE ${filters}`
        return { items, total }
      }).pipe(run, Effect.withSpan("DeadLetters.list"))

    const get = (id: number) =>
      sql<DeadLetter>`SELECT ${sql.literal(columns)} FROM dead_letters WHERE id = ${id}`.pipe(
        run,
        Effect.flatMap((rows) => rows.length === 0 ? new DeadLetterNotFound({ id }) : Effect.succeed(rows[0]))
      )

    const retry = (id: number) =>
      sql<{ source: "outbox" | "queue" }>`
        WITH taken AS (
          DELETE FROM dead_letters WHERE id = ${id} RETURNING *
        ), to_outbox AS (
          INSERT INTO outbox (message_id, topic, payload)
          SELECT message_id, topic, payload FROM taken WHERE source = 'outbox'
        ), to_queue AS (
          INSERT INTO jobs (queue, topic, message_id, payload)
          SELECT queue, topic, message_id, payload FROM taken WHERE source = 'queue'
        )
        SELECT source, pg_notify(
          CASE source WHEN 'outbox' THEN ${channels.outbox} ELSE ${channels.jobs} END,
          coalesce(queue, topic)
        ) FROM taken
      `.pipe(
        run,
        Effect.flatMap((rows) =>
          rows.length === 0 ? new DeadLetterNotFound({ id }) : Effect.succeed({ requeuedTo: rows[0].source })
        ),
        Effect.tap(({ requeuedTo }) =>
          Effect.logInfo("dead letter requeued").pipe(
            Effect.annotateLogs({ component: "dead-letters", deadLetterId: id, requeuedTo })
          )
        ),
        Effect.withSpan("DeadLetters.retry")
      )

    const discard = (id: number) =>
      sql<{ id: number }>`DELETE FROM dead_letters WHERE id = ${id} RETURNING id`.pipe(
        run,
        Effect.flatMap((rows) => rows.length === 0 ? new DeadLetterNotFound({ id }) : Effect.void),
        Effect.tap(() =>
          Effect.logInfo("dead letter discarded").pipe(
            Effect.annotateLogs({ component: "dead-letters", deadLetterId: id })
          )
        )
      )

    return { list, get, retry, discard } satisfies DeadLettersShape
  })

  static readonly layer = Layer.effect(DeadLetters, DeadLetters.make)
}
