import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import {
  Clock,
  Context,
  Duration,
  Effect,
  Either,
  Exit,
  Layer,
  Metric,
  Option,
  ParseResult,
  Random,
  Schema
} from "effect"
import { type BackoffPolicy, retryDelayMs } from "../domain/Backoff.js"
import { AppConfig } from "../layers/Config.js"
import { writeBackPause } from "../layers/Schedules.js"
import { type Admission, CheckInSink } from "./Admissions.js"
import { commitFailuresAsErrors, retryTransient } from "./Database.js"
import { Inbox } from "./Inbox.js"
import { channels, Listener } from "./Listener.js"
import { Outbox } from "./Outbox.js"
import { type Job, type JobFailure, Queue } from "./Queue.js"
import { supervised } from "./Supervisor.js"
import { type ProviderError, TicketProvider } from "./TicketProvider.js"
import { Tickets } from "./Tickets.js"
import { workerOwner } from "./Worker.js"

/**
 * Gate check-ins written back to the ticketing provider, off the gate's path: the admission's
 * transaction appends an outbox event (`CheckInWriteBack.sink`), the relay queues it, and a
 * delivery loop of the ticketing component sends it with `TicketProvider.checkin`. The provider
 * records one check-in per nonce, so a write-back sent twice (a crash after the call, before the
 * job completed) is harmless; the inbox records each delivered message with its job's completion,
 * so a copy of a delivered message is never sent again.
 *
 * The provider being down is not a write-back's fault: such rounds hand their jobs back without
 * counting an attempt and the loop pauses (until the breaker half-opens, or with a backoff up to
 * `CHECKIN_WRITEBACK_PAUSE_MAX_MS`), however long the outage lasts. Only answers that blame the
 * write-back itself (a 4xx, a malformed answer) count, with per-job backoff, towards parking it
 * as a dead letter after `CHECKIN_WRITEBACK_MAX_ATTEMPTS`.
 */

export const topic = "admission.checked_in"
/** The queue of the write-backs and the inbox scope of their deliveries; stable across releases. */
export const queueName = "ticket-checkin-writeback"

/** What an admission's check-in event carries: ids only, never a ticket secret or a probe. */
export const CheckedIn = Schema.Struct({
  admissionId: Schema.Number,
  ticketId: Schema.String,
  /** The provider's idempotency key for this check-in: one per device scan. */
  nonce: Schema.String,
  direction: Schema.Literal("entry", "exit"),
  /** When it happened: the service's time for an online scan, the device's for an offline fact. */
  at: Schema.String
})
export type CheckedIn = typeof CheckedIn.Type

/** The provider's nonce of a scan: a device's nonce is unique only for that device. */
export const providerNonce = (admission: Pick<Admission, "deviceId" | "nonce">) =>
  `gatehouse:${admission.deviceId}:${admission.nonce}`

export const checkedIn = (admission: Admission): CheckedIn => ({
  admissionId: admission.admissionId,
  ticketId: admission.ticketId!,
  nonce: providerNonce(admission),
  direction: admission.direction,
  at: (admission.offline ? admission.deviceTime : admission.serverTime).toISOString()
})

/** How one write-back ended, as the inbox stores it. */
const Delivered = Schema.Struct({
  result: Schema.Literal("recorded", "declined", "skipped"),
  reason: Schema.NullOr(Schema.String)
})
type Delivered = typeof Delivered.Type

const writeBacks = Metric.counter("gatehouse_checkin_writebacks_total", {
  description: "Check-in write-backs to the ticketing provider by outcome (recorded, declined, skipped, " +
    "postponed, retried, parked)",
  incremental: true
})
const count = (outcome: string, n: number) =>
  n === 0 ? Effect.void : Metric.incrementBy(Metric.tagged(writeBacks, "outcome", outcome), n)

type Attempt =
  | { readonly _tag: "Delivered"; readonly job: Job; readonly delivered: Delivered }
  /** The provider could not take it now (unreachable, breaker open, rate limited): not the job's fault. */
  | { readonly _tag: "Postponed"; readonly job: Job; readonly error: ProviderError }
  /** The provider's answer blames this write-back: retried with backoff, then parked. */
  | { readonly _tag: "Failed"; readonly job: Job; readonly error: string; readonly rejected: boolean }

export interface RoundSummary {
  readonly claimed: number
  readonly delivered: number
  readonly postponed: number
  readonly retried: number
  readonly parked: number
  /** The longest `Retry-After` among rate-limited attempts, in milliseconds. */
  readonly retryAfterMs: number
}

export interface WriteBackOptions {
  readonly batchSize: number
  readonly leaseMs: number
  readonly pollIntervalMs: number
  readonly maxAttempts: number
  readonly backoff: BackoffPolicy
  readonly pauseMaxMs: number
  readonly concurrency: number
  readonly owner: string
}

export interface CheckInWriteBackShape {
  /**
   * One delivery round: claims due write-backs, sends them, then in one transaction records the
   * delivered ones in the inbox and completes them, reschedules or parks the failed ones, and
   * hands the postponed ones back uncounted.
   */
  readonly runOnce: Effect.Effect<RoundSummary, SqlError>
}

export class CheckInWriteBack extends Context.Tag("gatehouse/CheckInWriteBack")<
  CheckInWriteBack,
  CheckInWriteBackShape
>() {
  /**
   * The admission side: appends the check-in event in the admission's transaction when a ticketing
   * provider is configured (nothing otherwise), and makes sure the write-back queue receives it.
   */
  static readonly sink = Layer.effect(
    CheckInSink,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const outbox = yield* Outbox
      const queue = yield* Queue
      if (Option.isNone(config.ticketProviderUrl)) {
        return { recorded: () => Effect.void }
      }
      // Before any admission can append: an event published to a topic nobody subscribes to is dropped.
      yield* retryTransient(queue.subscribe(topic, queueName)).pipe(Effect.orDie)
      return {
        recorded: (admission) =>
          admission.ticketId === null ? Effect.void : Effect.asVoid(
            outbox.append(topic, checkedIn(admission), { messageId: `checkin:${admission.admissionId}` })
          )
      }
    })
  )

  static readonly make = (options: WriteBackOptions) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* Queue
      const inbox = yield* Inbox
      const provider = yield* TicketProvider
      const tickets = yield* Tickets
      const decode = Schema.decodeUnknown(CheckedIn)

      const annotate = (job: Job) =>
        Effect.annotateLogs({ component: "ticketing", messageId: job.messageId, attempt: job.attempt })

      const deliver = (job: Job): Effect.Effect<Attempt, SqlError> =>
        Effect.gen(function*() {
          const payload = yield* Effect.either(decode(job.payload))
          if (Either.isLeft(payload)) {
            const error = `not a check-in: ${ParseResult.TreeFormatter.formatErrorSync(payload.left)}`
            return { _tag: "Failed", job, error, rejected: true } as const
          }
          // A copy of a message that was delivered before: its outcome stands, nothing is sent.
          const seen = yield* inbox.lookup(queueName, job.messageId).pipe(Effect.option, Effect.map(Option.flatten))
          if (Option.isSome(seen) && seen.value.status === "succeeded") {
            return { _tag: "Delivered", job, delivered: { result: "skipped", reason: "delivered before" } } as const
          }
          const ticket = yield* retryTransient(tickets.get(payload.right.ticketId))
          if (Option.isNone(ticket)) {
            return { _tag: "Delivered", job, delivered: { result: "skipped", reason: "the ticket is gone" } } as const
          }
          const sent = yield* Effect.either(provider.checkin({
            secret: ticket.value.secret,
            nonce: payload.right.nonce,
            type: payload.right.direction,
            datetime: new Date(payload.right.at)
          }))
          if (Either.isRight(sent)) {
            const delivered: Delivered = sent.right._tag === "Recorded"
              ? { result: "recorded", reason: null }
              : { result: "declined", reason: sent.right.reason }
            if (delivered.result === "declined") {
              yield* Effect.logWarning("provider declined a check-in").pipe(
                annotate(job),
                Effect.annotateLogs({ reason: delivered.reason })
              )
            }
            return { _tag: "Delivered", job, delivered } as const
          }
          const error = sent.left
          if (error._tag === "ProviderUnavailable" || error._tag === "ProviderRateLimited") {
            return { _tag: "Postponed", job, error } as const
          }
          return { _tag: "Failed", job, error: `${error._tag}: ${error.detail}`, rejected: false } as const
        })

      const settle = (attempts: ReadonlyArray<Attempt>) =>
        Effect.gen(function*() {
          const held = yield* queue.lock(attempts.map((a) => a.job))
          const mine = attempts.filter((a) => held.has(a.job.id))

          const done: Array<Job> = []
          const retries: Array<JobFailure & { delayMs: number }> = []
          const parks: Array<JobFailure> = []
          for (const a of mine) {
            if (a._tag !== "Delivered") continue
            const recorded = yield* Effect.either(inbox.process(
              { scope: queueName, key: a.job.messageId, payload: a.job.payload },
              Effect.succeed(a.delivered),
              { success: Delivered, concurrent: "fail" }
            ))
            if (Either.isRight(recorded)) {
              done.push(a.job)
            } else if (recorded.left._tag === "IdempotencyKeyReused") {
              // Another message under a delivered message's id: it is not a copy, and nothing will change that.
              parks.push({ lease: a.job, error: recorded.left.message })
            } else {
              // Sent, but not recorded (a copy being recorded right now, a transient failure): look again
              // shortly; the provider answers a resend from its nonce.
              retries.push({ lease: a.job, error: recorded.left.message, delayMs: 1000 })
            }
          }
          for (const a of mine) {
            if (a._tag !== "Failed") continue
            if (a.rejected || a.job.attempt >= options.maxAttempts) {
              parks.push({ lease: a.job, error: a.error })
              yield* Effect.logError("check-in write-back parked as dead letter").pipe(
                annotate(a.job),
                Effect.annotateLogs({ error: a.error })
              )
            } else {
              const delayMs = retryDelayMs(options.backoff, a.job.attempt, yield* Random.next)
              retries.push({ lease: a.job, error: a.error, delayMs })
              yield* Effect.logWarning("check-in write-back refused, retry scheduled").pipe(
                annotate(a.job),
                Effect.annotateLogs({ error: a.error })
              )
            }
          }
          yield* queue.complete(done)
          yield* queue.retry(retries)
          yield* queue.park(parks)
          return { delivered: done.length, retried: retries.length, parked: parks.length }
        })

      const heartbeat = (jobs: ReadonlyArray<Job>) =>
        queue.extend(jobs, options.leaseMs).pipe(
          retryTransient,
          Effect.catchAll((error) =>
            Effect.logWarning("write-back lease heartbeat failed", error).pipe(
              Effect.annotateLogs({ component: "ticketing" })
            )
          ),
          Effect.delay(Duration.millis(Math.max(1, Math.floor(options.leaseMs / 3)))),
          Effect.forever
        )

      const release = (jobs: ReadonlyArray<Job>) =>
        jobs.length === 0 ? Effect.void : queue.release(jobs).pipe(
          retryTransient,
          Effect.asVoid,
          Effect.catchAll((error) =>
            Effect.logWarning("handing write-backs back failed; their leases will expire", error).pipe(
              Effect.annotateLogs({ component: "ticketing" })
            )
          )
        )

      const empty: RoundSummary = { claimed: 0, delivered: 0, postponed: 0, retried: 0, parked: 0, retryAfterMs: 0 }

      const process = (jobs: ReadonlyArray<Job>) =>
        Effect.gen(function*() {
          yield* Effect.forkScoped(heartbeat(jobs))
          const attempts = yield* Effect.forEach(jobs, deliver, { concurrency: options.concurrency })
          const settled = yield* sql.withTransaction(settle(attempts)).pipe(commitFailuresAsErrors, retryTransient)
          const postponed = attempts.flatMap((a) => a._tag === "Postponed" ? [a] : [])
          // Handed back uncounted: an outage must not use up a write-back's attempts.
          yield* release(postponed.map((a) => a.job))

          const results = attempts.flatMap((a) => a._tag === "Delivered" ? [a.delivered.result] : [])
          for (const result of ["recorded", "declined", "skipped"] as const) {
            yield* count(result, results.filter((r) => r === result).length)
          }
          yield* count("postponed", postponed.length)
          yield* count("retried", settled.retried)
          yield* count("parked", settled.parked)
          return {
            claimed: jobs.length,
            ...settled,
            postponed: postponed.length,
            retryAfterMs: Math.max(
              0,
              ...postponed.map((a) => a.error._tag === "ProviderRateLimited" ? a.error.retryAfterMs ?? 0 : 0)
            )
          } satisfies RoundSummary
        }).pipe(
          Effect.scoped,
          // Interrupted (shutdown) or failed: what is still held goes back now rather than at lease expiry.
          Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : release(jobs))
        )

      const runOnce = retryTransient(queue.claim({
        queues: [queueName],
        limit: options.batchSize,
        leaseMs: options.leaseMs,
        owner: options.owner
      })).pipe(
        Effect.flatMap((jobs) => jobs.length === 0 ? Effect.succeed(empty) : process(jobs)),
        Effect.withSpan("CheckInWriteBack.runOnce")
      )

      /** How long to wait before the next round after one that postponed write-backs. */
      const pauseAfter = (summary: RoundSummary, failedRounds: number) =>
        Effect.gen(function*() {
          const state = yield* provider.breakerState
          const now = yield* Clock.currentTimeMillis
          if (state._tag === "Open") return Math.max(0, state.until - now)
          // The calls were turned away by a breaker that has closed since: go on at once.
          if (state._tag === "Closed" && summary.retryAfterMs === 0 && failedRounds <= 1) return 0
          return Math.max(summary.retryAfterMs, writeBackPause(options.pauseMaxMs, failedRounds, yield* Random.next))
        })

      const loop = Effect.gen(function*() {
        const listener = yield* Listener
        let failedRounds = 0
        while (true) {
          // While the breaker is open every call would fail at once: wait for it to half-open.
          const state = yield* provider.breakerState
          if (state._tag === "Open") {
            yield* Effect.sleep(Duration.millis(Math.max(1, state.until - (yield* Clock.currentTimeMillis))))
          }
          const summary = yield* runOnce
          if (summary.postponed > 0) {
            failedRounds += 1
            const pause = yield* pauseAfter(summary, failedRounds)
            yield* Effect.logDebug("provider unavailable, write-backs postponed").pipe(
              Effect.annotateLogs({ component: "ticketing", postponed: summary.postponed, pauseMs: pause })
            )
            if (pause > 0) yield* Effect.sleep(Duration.millis(pause))
            continue
          }
          failedRounds = 0
          if (summary.claimed === 0) yield* listener.wait(channels.jobs, options.pollIntervalMs)
        }
      })

      return { runOnce, loop }
    })

  /**
   * The delivery loop of the process, supervised. Without a configured provider there is no loop
   * (the sink then appends nothing, so nothing waits for it) and `runOnce` does nothing.
   */
  static readonly layer = Layer.scoped(
    CheckInWriteBack,
    Effect.gen(function*() {
      const config = yield* AppConfig
      if (Option.isNone(config.ticketProviderUrl)) {
        return {
          runOnce: Effect.succeed({ claimed: 0, delivered: 0, postponed: 0, retried: 0, parked: 0, retryAfterMs: 0 })
        }
      }
      const writeBack = yield* CheckInWriteBack.make(options(config))
      yield* supervised("checkin-writeback", writeBack.loop)
      return { runOnce: writeBack.runOnce }
    })
  )
}

const options = (config: AppConfig["Type"]): WriteBackOptions => ({
  batchSize: config.checkinWritebackBatchSize,
  leaseMs: config.queueLeaseMs,
  pollIntervalMs: config.queuePollIntervalMs,
  maxAttempts: config.checkinWritebackMaxAttempts,
  backoff: { baseMs: config.queueBackoffBaseMs, maxMs: config.queueBackoffMaxMs },
  pauseMaxMs: config.checkinWritebackPauseMaxMs,
  concurrency: config.ticketProviderConcurrency,
  owner: workerOwner()
})
