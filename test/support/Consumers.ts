import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"
import { consumer, Consumers, MessageRejected } from "../../src/services/Consumers.js"
import { Outbox } from "../../src/services/Outbox.js"
import { Queue } from "../../src/services/Queue.js"
import type { Workers } from "../../src/services/Worker.js"

/** What the test consumer does with a message. */
export const TestPayload = Schema.Struct({
  n: Schema.Number,
  /** "fail": always fails (poison); "reject": the message's fault; otherwise succeeds. */
  behaviour: Schema.optional(Schema.Literal("ok", "fail", "reject")),
  /** Also publish an event through the outbox from inside the handler. */
  publish: Schema.optional(Schema.Boolean),
  /** Milliseconds the handler takes, inside the transaction. */
  delayMs: Schema.optional(Schema.Number)
})

/**
 * Registers a consumer `name` on topic `${name}.in` whose effect is a row in `effects`
 * (message id, worker); with `publish` it also appends `${name}.out` with message id
 * `out:<message id>`. Returns the topic.
 */
export const registerTestConsumer = (name: string, worker = "test-worker") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox
    const consumers = yield* Consumers
    const topic = `${name}.in`
    yield* consumers.register(consumer({
      name,
      topics: [topic],
      schema: TestPayload,
      handle: (payload, message) =>
        Effect.gen(function*() {
          if (payload.behaviour === "reject") return yield* new MessageRejected({ reason: "test rejection" })
          if (payload.behaviour === "fail") return yield* Effect.fail(new Error(`poisoned message ${payload.n}`))
          yield* sql`INSERT INTO effects (message_id, worker) VALUES (${message.messageId}, ${worker})`
          if (payload.publish === true) {
            yield* outbox.append(`${name}.out`, { n: payload.n }, { messageId: `out:${message.messageId}` })
          }
          if (payload.delayMs !== undefined) yield* Effect.sleep(payload.delayMs)
        })
    }))
    return topic
  })

/** Enqueues `count` messages for consumer `name`, message ids `${name}-<i>`. */
export const enqueueMany = (
  name: string,
  count: number,
  payload: (i: number) => typeof TestPayload.Type = (n) => ({ n })
) =>
  Effect.flatMap(Queue, (queue) =>
    queue.enqueue(Array.from({ length: count }, (_, i) => ({
      queue: name,
      topic: `${name}.in`,
      messageId: `${name}-${i}`,
      payload: payload(i)
    }))))

/** Runs batches until no job of `queue` is left, ready or scheduled. */
export const drainQueue = (workers: Workers["Type"], queue: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    while (true) {
      const [{ left }] = yield* sql<{ left: number }>`SELECT count(*)::int AS left FROM jobs WHERE queue = ${queue}`
      if (left === 0) return
      const batch = yield* workers.runOnce
      if (batch.claimed === 0) yield* Effect.sleep(5)
    }
  })

/** Effects recorded for messages of consumer `name`, by message id. */
export const effectCounts = (name: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ message_id: string; n: number }>`
      SELECT message_id, count(*)::int AS n FROM effects WHERE message_id LIKE ${name + "-%"} GROUP BY message_id
    `.pipe(Effect.map((rows) => new Map(rows.map((r) => [r.message_id, r.n])))))
