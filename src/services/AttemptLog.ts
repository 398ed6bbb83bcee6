import { HttpApiSchema } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Chunk, Context, Deferred, Duration, Effect, Layer, Queue, Ref, Schema } from "effect"
import { attemptLogRetry } from "../layers/Schedules.js"
import { Audit, type AuditEntry } from "./Audit.js"
import { retryTransient } from "./Database.js"
import { Enrollment } from "./Enrollment.js"
import { supervised } from "./Supervisor.js"

/**
 * Every identification and verification attempt, in the audit log: who asked, the model and
 * threshold used, the decision and the scores. Never the probe vector.
 */
export interface Attempt {
  readonly kind: "identification" | "verification"
  readonly attemptId: string
  readonly venueId: string
  readonly deviceId: string
  readonly eventId?: string | undefined
  /** Verification: the person compared. Identification: the best match, if any. */
  readonly personId?: string | undefined
  readonly modelId: string
  readonly threshold: number
  readonly decision: "match" | "no_match"
  /** Candidates at or above the threshold, best first. */
  readonly candidates: ReadonlyArray<{ readonly personId: string; readonly score: number }>
  /** The best score found, even below the threshold, for tuning thresholds. Null when nothing was compared. */
  readonly bestScore: number | null
  readonly templatesSearched: number
}

/** The audit log entry of an attempt: ids, model, threshold, decision and scores; never the probe. */
export const auditEntry = (attempt: Attempt): AuditEntry => ({
  action: attempt.kind,
  venueId: attempt.venueId,
  deviceId: attempt.deviceId,
  personId: attempt.personId,
  eventId: attempt.eventId,
  details: {
    attemptId: attempt.attemptId,
    modelId: attempt.modelId,
    threshold: attempt.threshold,
    decision: attempt.decision,
    candidates: attempt.candidates,
    bestScore: attempt.bestScore,
    templatesSearched: attempt.templatesSearched
  }
})

/** Attempts arrive faster than the audit log can take them and the buffer is full. */
export class AttemptLogFull extends Schema.TaggedError<AttemptLogFull>()(
  "AttemptLogFull",
  {},
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return "attempts cannot be recorded right now; try again shortly"
  }
}

export interface AttemptLogShape {
  /**
   * Records an attempt. Attempts of concurrent requests are written together in one transaction
   * (group commit). While the database answers, this waits until the attempt is durable; while
   * it does not, the attempt waits in a bounded buffer and this returns at once, so matching keeps
   * serving its last state. A full buffer fails with `AttemptLogFull`: no attempt goes unrecorded
   * by design, only by a crash while the database is unreachable.
   */
  readonly record: (attempt: Attempt) => Effect.Effect<void, AttemptLogFull>
  /** Attempts waiting to be written. */
  readonly pending: Effect.Effect<number>
}

/** What the memory attempt log holds. */
export class RecordedAttempts extends Context.Tag("gatehouse/RecordedAttempts")<
  RecordedAttempts,
  Effect.Effect<ReadonlyArray<Attempt>>
>() {}

export class AttemptLog extends Context.Tag("gatehouse/AttemptLog")<AttemptLog, AttemptLogShape>() {
  /** Group-commit writer into the audit log, with a supervised background loop. */
  static readonly layer = (options: { readonly capacity?: number; readonly batchSize?: number } = {}) =>
    Layer.scoped(
      AttemptLog,
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const audit = yield* Audit
        const enrollment = yield* Enrollment
        const capacity = options.capacity ?? 10_000
        const batchSize = options.batchSize ?? 256
        // A database that hangs rather than fails must not hold identification longer than this.
        const waitLimit = Duration.seconds(2)
        const queue = yield* Queue.dropping<{ readonly attempt: Attempt; readonly done: Deferred.Deferred<void> }>(
          capacity
        )
        const writing = yield* Ref.make(0)
        const healthy = yield* Ref.make(true)

        // A person found is a person's interaction: it moves their retention date, with the record.
        const write = (batch: ReadonlyArray<{ readonly attempt: Attempt }>) =>
          retryTransient(sql.withTransaction(Effect.zipRight(
            Effect.forEach(batch, ({ attempt }) => audit.record(auditEntry(attempt)), { discard: true }),
            enrollment.recordInteraction([
              ...new Set(batch.flatMap(({ attempt }) =>
                attempt.decision === "match" && attempt.personId !== undefined ? [attempt.personId] : []
              ))
            ])
          )))

        // A batch that cannot be written is kept and retried until it is: attempts are never dropped.
        const loop = Effect.forever(Effect.gen(function*() {
          const batch = yield* Queue.takeBetween(queue, 1, batchSize)
          yield* Ref.set(writing, batch.length)
          yield* write(Chunk.toReadonlyArray(batch)).pipe(
            Effect.tapError((error) =>
              Effect.zipRight(
                Ref.set(healthy, false),
                Effect.logWarning("attempts not written, retrying", error).pipe(
                  Effect.annotateLogs({ component: "matching" })
                )
              )
            ),
            Effect.retry(attemptLogRetry),
            Effect.orDie
          )
          yield* Ref.set(healthy, true)
          yield* Ref.set(writing, 0)
          yield* Effect.forEach(batch, ({ done }) =>
            Deferred.succeed(done, undefined), { discard: true })
        }))
        yield* supervised("attempt-log", loop)

        // Attempts still buffered at shutdown get a last chance to be written.
        yield* Effect.addFinalizer(() =>
          Queue.takeAll(queue).pipe(
            Effect.flatMap((rest) => rest.length === 0 ? Effect.void : write([...rest])),
            Effect.timeout(Duration.seconds(5)),
            Effect.ignore
          )
        )

        const record = (attempt: Attempt) =>
          Effect.gen(function*() {
            const done = yield* Deferred.make<void>()
            const accepted = yield* Queue.offer(queue, { attempt, done })
            if (!accepted) return yield* new AttemptLogFull()
            if (yield* Ref.get(healthy)) yield* Deferred.await(done).pipe(Effect.timeout(waitLimit), Effect.ignore)
          })

        return {
          record,
          pending: Effect.zipWith(Queue.size(queue), Ref.get(writing), (a, b) => a + b)
        }
      })
    )

  /** Keeps attempts in memory, for tests; `RecordedAttempts` reads them. */
  static readonly layerMemory: Layer.Layer<AttemptLog | RecordedAttempts> = Layer.effectContext(
    Effect.map(Ref.make<ReadonlyArray<Attempt>>([]), (recorded) =>
      Context.make(AttemptLog, {
        record: (attempt: Attempt) => Ref.update(recorded, (all) => [...all, attempt]),
        pending: Effect.succeed(0)
      }).pipe(Context.add(RecordedAttempts, Ref.get(recorded))))
  )
}
