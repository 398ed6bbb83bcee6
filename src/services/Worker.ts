import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Context, Duration, Effect, Exit, Layer, Metric, Option, Random, Ref, Schedule, Schema } from "effect"
import * as Crypto from "node:crypto"
import * as Os from "node:os"
import { type BackoffPolicy, retryDelayMs } from "../domain/Backoff.js"
import { AppConfig, type AppConfigShape } from "../layers/Config.js"
import { type Consumer, Consumers, MessageRejected } from "./Consumers.js"
import { commitFailuresAsErrors, isTransient, retryTransient } from "./Database.js"
import { IdempotencyKeyReused, Inbox } from "./Inbox.js"
import { channels, Listener } from "./Listener.js"
import { Outbox, type PendingEvent } from "./Outbox.js"
import { type Job, type JobFailure, type Lease, Queue } from "./Queue.js"
import { describeFailure } from "./Relay.js"
import { supervised } from "./Supervisor.js"

export interface WorkerOptions {
  /** Batches processed at once, each by its own claimer in its own transaction. */
  readonly concurrency: number
  /** Jobs claimed at once and completed in one transaction. */
  readonly batchSize: number
  readonly leaseMs: number
  readonly pollIntervalMs: number
  /** Attempts before a failing job is parked. */
  readonly maxAttempts: number
  readonly backoff: BackoffPolicy
  /** Milliseconds that running batches get to finish at shutdown before their leases are released. */
  readonly graceMs: number
  /** Recorded on claimed jobs, to tell operators which process held them. */
  readonly owner: string
}

export interface BatchSummary {
  readonly claimed: number
  readonly completed: number
  readonly retried: number
  readonly parked: number
  /** Jobs whose lease another worker took over before this one could write their outcome. */
  readonly lost: number
}

const emptySummary: BatchSummary = { claimed: 0, completed: 0, retried: 0, parked: 0, lost: 0 }

const completedJobs = Metric.counter("gatehouse_queue_completed_total", {
  description: "Jobs completed by a consumer",
  incremental: true
})
const retriedJobs = Metric.counter("gatehouse_queue_retried_total", {
  description: "Failed job attempts scheduled for a retry",
  incremental: true
})
const parkedJobs = Metric.counter("gatehouse_queue_parked_total", {
  description: "Jobs parked as dead letters",
  incremental: true
})
const lostJobs = Metric.counter("gatehouse_queue_lease_lost_total", {
  description: "Claimed jobs whose lease was taken over before their outcome was written",
  incremental: true
})

// The inbox asks for a batch in key order, so that two batches never wait on each other's keys.
const byInboxKey = (a: Job, b: Job) =>
  a.queue === b.queue
    ? (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0)
    : a.queue < b.queue
    ? -1
    : 1

/** A name for this process's claims: host, pid and a random suffix. */
export const workerOwner = () => `${Os.hostname()}/${process.pid}/${Crypto.randomBytes(3).toString("hex")}`

/** The workers' options from the configuration table, with a fresh owner name. */
export const workerOptionsFrom = (config: AppConfigShape, overrides: Partial<WorkerOptions> = {}): WorkerOptions => ({
  concurrency: config.queueConcurrency,
  batchSize: config.queueBatchSize,
  leaseMs: config.queueLeaseMs,
  pollIntervalMs: config.queuePollIntervalMs,
  maxAttempts: config.queueMaxAttempts,
  backoff: { baseMs: config.queueBackoffBaseMs, maxMs: config.queueBackoffMaxMs },
  graceMs: config.shutdownGraceMs,
  owner: workerOwner(),
  ...overrides
})

export interface WorkersShape {
  /** Claims one batch of the registered consumers' jobs and processes it. */
  readonly runOnce: Effect.Effect<BatchSummary, SqlError>
  /** Processes jobs already claimed (see `runOnce`). */
  readonly process: (jobs: ReadonlyArray<Job>) => Effect.Effect<BatchSummary, SqlError>
}

/**
 * Runs consumers on claimed jobs with group commit: a batch is processed in one transaction that
 * first locks the jobs still held under their fencing tokens, then passes their messages to the
 * inbox as one batch (one statement claims them, each handler runs in its own savepoint so that a
 * failing message rolls back alone, one statement stores the outcomes), writes the events the
 * handlers appended in one statement, and finally completes, reschedules or parks every job of
 * the batch. A worker whose lease was taken over finds its jobs missing at the lock
 * and writes nothing for them, neither effects nor outbox events nor outcomes. The transaction
 * sets `idle_in_transaction_session_timeout` to the lease, so a process that stalls in the middle
 * (paused, swapped out) loses its session and its row locks instead of blocking the takeover.
 */
export class Workers extends Context.Tag("gatehouse/Workers")<Workers, WorkersShape>() {
  static readonly make = (options: WorkerOptions) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const queue = yield* Queue
      const consumers = yield* Consumers

      const inbox = yield* Inbox
      const outbox = yield* Outbox

      const batch = (
        jobs: ReadonlyArray<Job>,
        registry: ReadonlyMap<string, Consumer>,
        verdicts: Array<Effect.Effect<void>>
      ) =>
        Effect.gen(function*() {
          verdicts.length = 0
          yield* sql`SELECT set_config('idle_in_transaction_session_timeout', ${String(options.leaseMs)}, true)`
          const held = yield* queue.lock(jobs)

          const done: Array<Lease> = []
          const retries: Array<JobFailure & { delayMs: number }> = []
          const parks: Array<JobFailure> = []
          const runnable: Array<{ readonly job: Job; readonly consumer: Consumer }> = []
          for (const job of [...jobs].sort(byInboxKey)) {
            if (!held.has(job.id)) continue
            const consumer = registry.get(job.queue)
            // Claimed for a consumer that is gone from this process: let it wait for one that has it.
            if (consumer === undefined) {
              retries.push({ lease: job, error: "no consumer registered in the claiming process", delayMs: 0 })
            } else runnable.push({ job, consumer })
          }

          // The inbox claims the batch's messages at once and runs each handler in a savepoint of
          // this transaction: a redelivered message (a duplicate job, a retried dead letter that had
          // succeeded) replays instead of running again. Rejections are not stored: a dead letter
          // retried after its cause was fixed must run again. The events a handler appends are
          // held back and written for the whole batch at once, only for the handlers that ran.
          const events: Array<ReadonlyArray<PendingEvent>> = []
          const exits = yield* inbox.receiveBatch(
            runnable.map(({ consumer, job }, i) => ({
              message: { scope: job.queue, key: job.messageId, payload: job.payload },
              handler: outbox.collect(
                consumer.handle({
                  messageId: job.messageId,
                  topic: job.topic,
                  payload: job.payload,
                  attempt: job.attempt
                })
              ).pipe(Effect.map(([, appended]) => {
                events[i] = appended
              }))
            })),
            { success: Schema.Void }
          )

          const appended: Array<PendingEvent> = []
          for (const [i, exit] of exits.entries()) {
            const { job } = runnable[i]!
            if (Exit.isSuccess(exit)) {
              if (!exit.value.replayed) appended.push(...(events[i] ?? []))
              done.push(job)
              continue
            }
            const error = describeFailure(exit.cause)
            const rejected = Option.exists(
              Cause.failureOption(exit.cause),
              (e) => e instanceof MessageRejected || e instanceof IdempotencyKeyReused
            )
            const annotations = { component: "queue", scope: job.queue, messageId: job.messageId, attempt: job.attempt }
            if (rejected || job.attempt >= options.maxAttempts) {
              parks.push({ lease: job, error })
              verdicts.push(
                Effect.logError("job parked as dead letter", exit.cause).pipe(Effect.annotateLogs(annotations))
              )
            } else {
              retries.push({
                lease: job,
                error,
                delayMs: retryDelayMs(options.backoff, job.attempt, yield* Random.next)
              })
              verdicts.push(
                Effect.logWarning("job failed, retry scheduled", exit.cause).pipe(Effect.annotateLogs(annotations))
              )
            }
          }

          yield* outbox.appendAll(appended)
          yield* queue.complete(done)
          yield* queue.retry(retries)
          yield* queue.park(parks)
          return {
            claimed: jobs.length,
            completed: done.length,
            retried: retries.length,
            parked: parks.length,
            lost: jobs.length - held.size
          }
        })

      const heartbeat = (jobs: ReadonlyArray<Job>) =>
        queue.extend(jobs, options.leaseMs).pipe(
          retryTransient,
          Effect.catchAll((error) =>
            Effect.logWarning("lease heartbeat failed", error).pipe(Effect.annotateLogs({ component: "queue" }))
          ),
          Effect.delay(Duration.millis(Math.max(1, Math.floor(options.leaseMs / 3)))),
          Effect.forever
        )

      const release = (jobs: ReadonlyArray<Job>) =>
        queue.release(jobs).pipe(
          retryTransient,
          Effect.tap((ids) =>
            Effect.logInfo("leases released").pipe(
              Effect.annotateLogs({ component: "queue", released: ids.length })
            )
          ),
          Effect.catchAll((error) =>
            Effect.logWarning("releasing leases failed; they will expire", error).pipe(
              Effect.annotateLogs({ component: "queue" })
            )
          )
        )

      const process = (jobs: ReadonlyArray<Job>) =>
        Effect.gen(function*() {
          if (jobs.length === 0) return emptySummary
          const registry = yield* consumers.snapshot
          // Forked before the transaction opens, so the heartbeat uses a connection of its own.
          yield* Effect.forkScoped(heartbeat(jobs))
          // What became of each failed job is logged once the batch committed: when the connection
          // dies midway, every message fails with it and nothing is scheduled, the whole batch runs again.
          const verdicts: Array<Effect.Effect<void>> = []
          const summary = yield* sql.withTransaction(batch(jobs, registry, verdicts)).pipe(
            commitFailuresAsErrors,
            Effect.tapError((error) =>
              isTransient(error)
                ? Effect.logWarning("batch failed on the database, running the whole batch again").pipe(
                  Effect.annotateLogs({ component: "queue", jobs: jobs.length, error: String(error) })
                )
                : Effect.void
            ),
            retryTransient
          )
          yield* Effect.all(verdicts, { discard: true })
          yield* Metric.incrementBy(completedJobs, summary.completed)
          yield* Metric.incrementBy(retriedJobs, summary.retried)
          yield* Metric.incrementBy(parkedJobs, summary.parked)
          if (summary.lost > 0) {
            yield* Metric.incrementBy(lostJobs, summary.lost)
            yield* Effect.logWarning("lease lost, jobs left to their new holder").pipe(
              Effect.annotateLogs({ component: "queue", lost: summary.lost })
            )
          }
          return summary
        }).pipe(
          Effect.scoped,
          // Interrupted (shutdown) or failed for good: hand the jobs back now rather than at lease expiry.
          Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : release(jobs)),
          Effect.withSpan("Workers.process", { attributes: { jobs: jobs.length } })
        )

      const claim = Effect.gen(function*() {
        const registry = yield* consumers.snapshot
        return yield* queue.claim({
          queues: [...registry.keys()],
          limit: options.batchSize,
          leaseMs: options.leaseMs,
          owner: options.owner
        }).pipe(retryTransient)
      })

      const runOnce = Effect.flatMap(claim, process)
      return { runOnce, process, claim }
    })

  /**
   * The workers of the process: `QUEUE_CONCURRENCY` supervised claimers that wake on
   * notifications and poll as a backstop, and a lease reaper. At shutdown they stop claiming,
   * running batches get `SHUTDOWN_GRACE_MS` to finish, and the leases of what did not finish are
   * released so that another instance takes the jobs at once.
   */
  static readonly layer = Layer.scoped(
    Workers,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const listener = yield* Listener
      const queue = yield* Queue
      const options = workerOptionsFrom(config)
      const workers = yield* Workers.make(options)
      // Claimers enter only while not stopping, so a drain that sees no claimer busy is final.
      const state = yield* Ref.make({ stopping: false, busy: 0 })
      const enter = Ref.modify(state, (s) => s.stopping ? [false, s] : [true, { ...s, busy: s.busy + 1 }])
      const leave = Ref.update(state, (s) => ({ ...s, busy: s.busy - 1 }))

      const claimer = Effect.forever(Effect.gen(function*() {
        if (!(yield* enter)) return yield* Effect.never
        const claimed = yield* Effect.flatMap(workers.claim, (jobs) => Effect.as(workers.process(jobs), jobs.length))
          .pipe(
            Effect.ensuring(leave)
          )
        if (claimed === 0) yield* listener.wait(channels.jobs, options.pollIntervalMs)
      }))
      for (let slot = 1; slot <= options.concurrency; slot++) {
        yield* supervised(`queue-worker-${slot}`, claimer)
      }

      yield* supervised(
        "queue-reaper",
        queue.reapExpired({ maxAttempts: options.maxAttempts, limit: 500 }).pipe(
          retryTransient,
          Effect.tap((r) =>
            r.released + r.parked === 0 ? Effect.void : Effect.logWarning("expired leases reaped").pipe(
              Effect.annotateLogs({ component: "queue", released: r.released, parked: r.parked })
            )
          ),
          Effect.zipRight(Effect.sleep(options.pollIntervalMs)),
          Effect.forever
        )
      )

      // Runs before the claimers are interrupted (finalizers run in reverse order).
      yield* Effect.addFinalizer(() =>
        Effect.gen(function*() {
          yield* Ref.update(state, (s) => ({ ...s, stopping: true }))
          // Finalizers run uninterruptibly, where a timeout would wait for the drain to end however
          // long the batches take: the wait itself must be interruptible for the grace period to hold.
          const drained = yield* Ref.get(state).pipe(
            Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (s) => s.busy === 0 }),
            Effect.interruptible,
            Effect.timeoutOption(options.graceMs)
          )
          yield* Effect.logInfo(Option.isSome(drained) ? "workers drained" : "grace period over, releasing leases")
            .pipe(Effect.annotateLogs({ component: "queue" }))
        })
      )
      return workers
    })
  )
}
