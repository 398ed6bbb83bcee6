import type { SqlError } from "@effect/sql/SqlError"
import { Context, Data, Effect, Layer, ParseResult, Ref, Schema } from "effect"
import { Queue } from "./Queue.js"

/**
 * The message itself is at fault (it does not decode, it names something that can never exist):
 * retrying cannot help, so the job is parked as a dead letter at once with this reason.
 */
export class MessageRejected extends Data.TaggedError("MessageRejected")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** A message as a consumer's handler sees it. */
export interface Message {
  readonly messageId: string
  readonly topic: string
  readonly payload: unknown
  /** 1 on the first attempt. */
  readonly attempt: number
}

/**
 * A handler subscribed to topics. `name` is the queue its jobs wait in and the inbox scope that
 * de-duplicates them, so it must stay stable across releases. The handler runs inside the
 * worker's transaction: its writes, the inbox record and the job's completion commit together.
 * It must be short and must not call anything outside the database (use the outbox for that): it
 * may run again after a run whose writes were rolled back (another message of its batch failed,
 * the batch's transaction was retried), and only the committed run counts.
 */
export interface Consumer {
  readonly name: string
  readonly topics: ReadonlyArray<string>
  readonly handle: (message: Message) => Effect.Effect<unknown, unknown>
}

/** A consumer whose payloads are decoded with `schema`; a payload that does not decode is rejected. */
export const consumer = <A, I, E>(options: {
  readonly name: string
  readonly topics: ReadonlyArray<string>
  readonly schema: Schema.Schema<A, I, never>
  readonly handle: (payload: A, message: Message) => Effect.Effect<unknown, E>
}): Consumer => {
  const decode = Schema.decodeUnknown(options.schema)
  return {
    name: options.name,
    topics: options.topics,
    handle: (message) =>
      decode(message.payload).pipe(
        Effect.mapError((error) => new MessageRejected({ reason: ParseResult.TreeFormatter.formatErrorSync(error) })),
        Effect.flatMap((payload) => options.handle(payload, message))
      )
  }
}

export class ConsumerNameTaken extends Data.TaggedError("ConsumerNameTaken")<{ readonly name: string }> {}

export interface ConsumersShape {
  /**
   * Registers a consumer in this process and records its topic subscriptions in the database, so
   * that every relay fans messages of those topics out to its queue. Components call it when their
   * layer starts; the workers pick it up at their next claim.
   */
  readonly register: (consumer: Consumer) => Effect.Effect<void, SqlError | ConsumerNameTaken>
  readonly snapshot: Effect.Effect<ReadonlyMap<string, Consumer>>
}

/** The consumers of this process, by name: what the workers claim jobs for. */
export class Consumers extends Context.Tag("gatehouse/Consumers")<Consumers, ConsumersShape>() {
  static readonly layer = Layer.effect(
    Consumers,
    Effect.gen(function*() {
      const queue = yield* Queue
      const registry = yield* Ref.make<ReadonlyMap<string, Consumer>>(new Map())

      const register = (consumer: Consumer) =>
        Effect.gen(function*() {
          if ((yield* Ref.get(registry)).has(consumer.name)) {
            return yield* new ConsumerNameTaken({ name: consumer.name })
          }
          for (const topic of consumer.topics) yield* queue.subscribe(topic, consumer.name)
          yield* Ref.update(registry, (all) => new Map([...all, [consumer.name, consumer]]))
          yield* Effect.logDebug("consumer registered").pipe(
            Effect.annotateLogs({ component: "queue", scope: consumer.name })
          )
        })

      return { register, snapshot: Ref.get(registry) }
    })
  )
}
