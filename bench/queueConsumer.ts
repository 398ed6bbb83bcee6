/**
 * The Gatehouse side of the consumer scenario, run inside the bench service process: a consumer
 * whose handler writes one domain row and appends one outbox event, driven by the product's
 * group-commit workers (`Workers.make`: claim a batch, one transaction, the batch's messages through
 * the inbox's batch form, its events written at once, complete the batch).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Ref, Schema } from "effect"
import { AppConfig } from "../src/layers/Config.js"
import { consumer, Consumers } from "../src/services/Consumers.js"
import { Outbox } from "../src/services/Outbox.js"
import { Queue } from "../src/services/Queue.js"
import { workerOptionsFrom, Workers } from "../src/services/Worker.js"

export const benchQueue = "bench-consumer"
const topic = "bench.work"

const Payload = Schema.Struct({ n: Schema.Number })

const registered = Ref.unsafeMake(false)

/** Registers the bench consumer once per process. */
const register = Effect.gen(function*() {
  if (yield* Ref.getAndSet(registered, true)) return
  const sql = yield* SqlClient.SqlClient
  const outbox = yield* Outbox
  const consumers = yield* Consumers
  yield* consumers.register(consumer({
    name: benchQueue,
    topics: [topic],
    schema: Payload,
    // The workers run it through the inbox (scope: the consumer's name) inside the batch's transaction.
    handle: (payload, message) =>
      Effect.gen(function*() {
        yield* sql`INSERT INTO bench_domain (message_id, amount) VALUES (${message.messageId}, ${payload.n})`
        yield* outbox.append("bench.done", { messageId: message.messageId }, { messageId: `done:${message.messageId}` })
      })
  }))
})

export interface ConsumeArgs {
  readonly run: string
  readonly messages: number
  readonly concurrency: number
}

/**
 * Enqueues `messages` jobs (not timed), then runs `concurrency` claimers of the product's workers
 * until the queue is empty, and checks that every message had exactly one effect.
 */
export const consume = (args: ConsumeArgs) =>
  Effect.gen(function*() {
    yield* register
    const sql = yield* SqlClient.SqlClient
    const queue = yield* Queue
    const config = yield* AppConfig

    for (let from = 0; from < args.messages; from += 5_000) {
      const count = Math.min(5_000, args.messages - from)
      yield* queue.enqueue(Array.from({ length: count }, (_, i) => ({
        queue: benchQueue,
        topic,
        messageId: `${args.run}-${from + i}`,
        payload: { n: from + i }
      })))
    }

    const workers = yield* Workers.make(workerOptionsFrom(config, { concurrency: args.concurrency }))
    const claimer = Effect.gen(function*() {
      while (true) {
        const summary = yield* workers.runOnce
        if (summary.claimed === 0) return
      }
    })

    const started = performance.now()
    yield* Effect.all(Array.from({ length: args.concurrency }, () => claimer), { concurrency: "unbounded" })
    const elapsedMs = performance.now() - started

    const [effects] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM bench_domain WHERE message_id LIKE ${args.run + "-%"}
    `
    const [records] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM inbox_messages
      WHERE scope = ${benchQueue} AND key LIKE ${args.run + "-%"} AND status = 'succeeded'
    `
    const [left] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM jobs WHERE queue = ${benchQueue}`
    if (effects!.n !== args.messages || records!.n !== args.messages || left!.n !== 0) {
      return yield* Effect.dieMessage(
        `${args.run}: ${effects!.n} effects and ${records!.n} inbox records for ${args.messages} messages, ${
          left!.n
        } jobs left`
      )
    }
    return { elapsedMs }
  }).pipe(Effect.scoped)
