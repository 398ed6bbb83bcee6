import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Context, Effect, Exit, Layer, Metric, Option, Predicate, Random } from "effect"
import { type BackoffPolicy, retryDelayMs } from "../domain/Backoff.js"
import { AppConfig } from "../layers/Config.js"
import { commitFailuresAsErrors, isTransient, retryTransient } from "./Database.js"
import { Destination } from "./Destination.js"
import { channels, Listener } from "./Listener.js"
import { Outbox, type OutboxFailure } from "./Outbox.js"
import { supervised } from "./Supervisor.js"

export interface RelayOptions {
  /** Rows claimed and delivered per transaction. */
  readonly batch: number
  /** Attempts before a row is parked as a dead letter. */
  readonly maxAttempts: number
  readonly backoff: BackoffPolicy
  /** Milliseconds between polls when no notification arrives. */
  readonly pollIntervalMs: number
}

export interface RelayRound {
  readonly claimed: number
  readonly delivered: number
  readonly rescheduled: number
  readonly parked: number
}

const delivered = Metric.counter("gatehouse_outbox_delivered_total", {
  description: "Outbox rows delivered to their destination",
  incremental: true
})
const failedAttempts = Metric.counter("gatehouse_outbox_failed_attempts_total", {
  description: "Failed outbox delivery attempts",
  incremental: true
})
const parkedRows = Metric.counter("gatehouse_outbox_parked_total", {
  description: "Outbox rows parked as dead letters",
  incremental: true
})

/** Error text kept with a row; bounded so that one huge error cannot bloat the table. */
export const describeFailure = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) return Cause.pretty(cause).slice(0, 4000)
  const error = failure.value
  if (Predicate.isTagged(error, (error as { _tag: string })._tag) && error instanceof Error) {
    return `${(error as { _tag: string })._tag}: ${error.message}`.slice(0, 4000)
  }
  return (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).slice(0, 4000)
}

/**
 * Moves outbox rows to their destination. Each round is one transaction: lock due rows (several
 * relays skip each other's), deliver, then remove the delivered rows and give each failed row its
 * own next attempt time with backoff and jitter, or park it after the last attempt. A failing row
 * is simply rescheduled: it never holds back the rows behind it.
 */
export class Relay extends Context.Tag("gatehouse/Relay")<Relay, {
  /** One round; transient database errors, the commit's included, are retried. */
  readonly runOnce: Effect.Effect<RelayRound, SqlError>
}>() {
  static readonly make = (options: RelayOptions) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const outbox = yield* Outbox
      const destination = yield* Destination

      const round = Effect.gen(function*() {
        const rows = yield* outbox.claimDue(options.batch)
        if (rows.length === 0) return { claimed: 0, delivered: 0, rescheduled: 0, parked: 0 }

        // A savepoint, so that a destination failing on a statement leaves the transaction usable.
        const exit = yield* Effect.exit(sql.withTransaction(destination.deliver(rows)))
        if (Exit.isFailure(exit) && Option.exists(Cause.failureOption(exit.cause), isTransient)) {
          return yield* Effect.failCause(exit.cause)
        }
        const failures: ReadonlyArray<OutboxFailure> = Exit.isSuccess(exit)
          ? exit.value
          : rows.map((row) => ({ id: row.id, error: describeFailure(exit.cause) }))

        const failed = new Map(failures.map((f) => [f.id, f.error]))
        const reschedule: Array<OutboxFailure & { delayMs: number }> = []
        const park: Array<OutboxFailure> = []
        for (const row of rows) {
          const error = failed.get(row.id)
          if (error === undefined) continue
          const attempt = row.attempts + 1
          if (attempt >= options.maxAttempts) {
            park.push({ id: row.id, error })
          } else {
            reschedule.push({ id: row.id, error, delayMs: retryDelayMs(options.backoff, attempt, yield* Random.next) })
          }
          yield* Effect.logWarning(attempt >= options.maxAttempts ? "outbox row parked" : "outbox delivery failed")
            .pipe(Effect.annotateLogs({ component: "outbox-relay", messageId: row.messageId, attempt, error }))
        }

        yield* outbox.remove(rows.filter((row) => !failed.has(row.id)).map((row) => row.id))
        yield* outbox.reschedule(reschedule)
        yield* outbox.park(park)
        return {
          claimed: rows.length,
          delivered: rows.length - failures.length,
          rescheduled: reschedule.length,
          parked: park.length
        }
      })

      const runOnce = sql.withTransaction(round).pipe(
        commitFailuresAsErrors,
        retryTransient,
        Effect.tap((r) =>
          Effect.all([
            Metric.incrementBy(delivered, r.delivered),
            Metric.incrementBy(failedAttempts, r.rescheduled + r.parked),
            Metric.incrementBy(parkedRows, r.parked)
          ])
        ),
        Effect.withSpan("Relay.runOnce")
      )
      return { runOnce }
    })

  /** The relay of the process, run by a supervised loop that wakes on appends and polls as a backstop. */
  static readonly layer = Layer.scoped(
    Relay,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const listener = yield* Listener
      const relay = yield* Relay.make({
        batch: config.outboxRelayBatch,
        maxAttempts: config.outboxMaxAttempts,
        backoff: { baseMs: config.outboxBackoffBaseMs, maxMs: config.outboxBackoffMaxMs },
        pollIntervalMs: config.queuePollIntervalMs
      })

      yield* supervised(
        "outbox-relay",
        Effect.forever(Effect.gen(function*() {
          const round = yield* relay.runOnce
          if (round.claimed < config.outboxRelayBatch) {
            yield* listener.wait(channels.outbox, config.queuePollIntervalMs)
          }
        }))
      )
      return relay
    })
  )
}
