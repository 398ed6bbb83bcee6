import { HttpApiSchema } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import {
  Cause,
  Context,
  Data,
  Duration,
  Effect,
  Either,
  Exit,
  Layer,
  Metric,
  Option,
  ParseResult,
  Predicate,
  Schema
} from "effect"
import * as Crypto from "node:crypto"
import { fingerprint as fingerprintOf } from "../domain/Fingerprint.js"
import { AppConfig, type AppConfigShape, redeliveryHorizons } from "../layers/Config.js"
import { inboxWait, transientDatabase } from "../layers/Schedules.js"
import { isTransient } from "./Database.js"

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * The key was first used with another payload. The first outcome is untouched; `fingerprint` is
 * the first payload's, so a sender can tell which of its messages took the key.
 */
export class IdempotencyKeyReused extends Schema.TaggedError<IdempotencyKeyReused>()(
  "IdempotencyKeyReused",
  { key: Schema.String, fingerprint: Schema.String },
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return "this idempotency key was already used with a different payload"
  }
}

/** Another copy of the message is being processed right now; retry later for its outcome. */
export class MessageInProgress extends Schema.TaggedError<MessageInProgress>()(
  "MessageInProgress",
  { key: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return "another copy of this message is still being processed; retry later"
  }
}

/**
 * Nothing was stored because of a failure that is not the message's fault (database down,
 * serialization failure, a commit that did not happen). Retrying the same message is safe.
 */
export class InboxUnavailable extends Schema.TaggedError<InboxUnavailable>()(
  "InboxUnavailable",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return this.detail
  }
}

/** Every error the inbox itself adds to a handler's own errors. */
export type InboxError = IdempotencyKeyReused | MessageInProgress | InboxUnavailable

/** The retention window does not cover how late the configuration lets a copy arrive. */
export class InboxRetentionTooShort extends Data.TaggedError("InboxRetentionTooShort")<{
  readonly retentionHours: number
  readonly source: string
  readonly horizonMs: number
}> {
  override get message() {
    return `INBOX_RETENTION_HOURS (${this.retentionHours} h) must exceed the redelivery horizon of ${this.source} (${this.horizonMs} ms)`
  }
}

/** Raised by `layerFaulty` to stand for the process dying at a fault point. */
export class SimulatedCrash extends Data.TaggedError("SimulatedCrash")<{ readonly point: FaultPoint }> {}

// ---------------------------------------------------------------------------------------------
// Interface

/** A message as delivered: who it belongs to, the sender's id for it, and its content. */
export interface Message {
  /** Namespace of the key: `device:<id>` for device requests, the consumer's name for queues. */
  readonly scope: string
  /** The sender's id for the message (an Idempotency-Key, a batch item id, a queue message id). */
  readonly key: string
  /** The content; only its fingerprint is stored. Must be JSON-like (see `canonicalJson`). */
  readonly payload: unknown
}

export interface ProcessOptions<A, AI, F, FI> {
  /** Encodes the handler's success for storage and decodes it on replay. It must be JSON-safe. */
  readonly success: Schema.Schema<A, AI>
  /**
   * The rejections that are the message's fault (invalid input, a business refusal). A handler
   * failure this schema accepts (`Schema.is`) is stored and replayed like a success; the
   * handler's writes are rolled back. Any other failure stores nothing.
   */
  readonly failure?: Schema.Schema<F, FI>
  /**
   * What a copy does when another copy of the message is being processed: `"wait"` (default)
   * polls for its outcome up to `waitFor`, then fails with `MessageInProgress`; `"fail"` fails
   * with `MessageInProgress` at once (the HTTP adapter answers 409).
   */
  readonly concurrent?: "wait" | "fail"
  /** Bound of `"wait"`; default `INBOX_WAIT_MS`. */
  readonly waitFor?: Duration.DurationInput
}

/** One message of a batch and the handler that applies it. */
export interface BatchItem<A, E, R> {
  readonly message: Message
  readonly handler: Effect.Effect<A, E, R>
}

/** `ProcessOptions` of a batch: copies in progress elsewhere always fail at once. */
export type BatchOptions<A, AI, F, FI> = Pick<ProcessOptions<A, AI, F, FI>, "success" | "failure">

/** What a delivery got: the outcome, and whether it was replayed from an earlier delivery. */
export interface Receipt<A, F> {
  readonly replayed: boolean
  /** Right: the success; Left: a stored rejection. */
  readonly result: Either.Either<A, F>
  readonly fingerprint: string
}

/** A processed-message record as stored (never the payload). */
export interface ProcessedMessage {
  readonly scope: string
  readonly key: string
  readonly fingerprint: string
  readonly status: "claimed" | "succeeded" | "rejected"
  readonly attempts: number
  readonly createdAt: Date
  readonly completedAt: Date | null
}

export interface InboxShape {
  /**
   * Runs `handler` for a message once, however often the message is delivered.
   *
   * - First delivery: the handler runs; its writes and the processed-message record (payload
   *   fingerprint, outcome) commit in one transaction.
   * - Redelivery with the same payload (key order, whitespace and number spelling do not matter):
   *   the stored outcome is returned and nothing runs.
   * - Same key, other payload: `IdempotencyKeyReused`, the first outcome untouched.
   * - A copy arriving while another runs: see `concurrent`. Exactly one copy runs the handler.
   * - A handler failure that `failure` accepts is stored and replayed; any other failure, and
   *   every database failure, stores nothing, so the next delivery runs the handler again.
   *   Transient database failures (the handler's or the inbox's) are retried here first (when
   *   the inbox owns the transaction), then reported as `InboxUnavailable`; a `SqlError` that is
   *   not transient is a defect (a bug, or a constraint the handler should map to a rejection).
   * - A COMMIT whose outcome is unknown (connection lost) is settled by reading the record on
   *   another connection: committed means the outcome is returned, not committed means
   *   `InboxUnavailable`; the handler is never run again blindly.
   *
   * Outside a transaction, the inbox commits a claim with a lease first (`INBOX_CLAIM_LEASE_MS`,
   * database clock), then runs the handler in its own transaction that re-checks the claim token:
   * a holder whose claim was taken over after its lease cannot store anything.
   *
   * Inside a caller's transaction (a consumer committing many messages at once), the claim, the
   * handler and the record live in a savepoint of that transaction and commit with it; a
   * failure rolls back to the savepoint so the other messages of the batch are kept. The caller
   * then owns retries and the unknown-commit case: after a failed COMMIT it redelivers, and the
   * inbox answers from whatever was committed. Batches should use `concurrent: "fail"` and retry
   * an in-progress message later: waiting inside a transaction holds its locks meanwhile, and
   * two batches waiting for each other's messages would only stop at `waitFor`.
   *
   * ```ts
   * // a queue consumer committing a batch at once
   * sql.withTransaction(Effect.forEach(batch, (m) =>
   *   Effect.either(inbox.process({ scope: "consumer:enrollment", key: m.id, payload: m.body },
   *     handle(m.body), { success: Done, failure: Refused, concurrent: "fail" }))))
   * // then ack the messages whose result is Right or a stored rejection, nak the others
   * ```
   */
  readonly process: <A, AI, E, R, F = never, FI = never>(
    message: Message,
    handler: Effect.Effect<A, E, R>,
    options: ProcessOptions<A, AI, F, FI>
  ) => Effect.Effect<A, Exclude<E, SqlError> | InboxError, R>

  /** `process`, also telling whether the outcome was a replay; rejections are a `Left`. */
  readonly receive: <A, AI, E, R, F = never, FI = never>(
    message: Message,
    handler: Effect.Effect<A, E, R>,
    options: ProcessOptions<A, AI, F, FI>
  ) => Effect.Effect<Receipt<A, F>, Exclude<E, F | SqlError> | InboxError, R>

  /**
   * `receive` for many messages inside the caller's transaction (group commit), with the same
   * guarantees per message and far fewer round trips: one statement claims every new key of the
   * batch and reads the records of the others, the claimed messages' handlers run (all in one
   * savepoint; if one fails, again each in a savepoint of its own), and one statement stores every
   * outcome (and drops the claims of the messages that failed). Handlers must write only in the
   * transaction: a handler may run twice when another one of its batch fails, the first run rolled
   * back. Answers one `Exit` per item, in the order of `items`:
   *
   * - a new message runs its handler; a failure `failure` accepts is stored and replayed, any other
   *   failure rolls back that message's savepoint and stores nothing, leaving the other messages'
   *   outcomes untouched. A transient database failure of a handler runs it again (twice at most)
   *   before it becomes `InboxUnavailable`;
   * - a processed message replays its outcome, the same key with another payload is
   *   `IdempotencyKeyReused`, a key another transaction is processing is `MessageInProgress`
   *   (never waited for: waiting inside a transaction holds its locks);
   * - a later copy of a key already in the batch is answered after the first copy, as if the copies
   *   had arrived one after the other.
   *
   * The error channel carries only failures of the batch's own statements: the transaction is then
   * unusable and the caller rolls it back and redelivers the batch. Dies outside a transaction.
   */
  readonly receiveBatch: <A, AI, E, R, F = never, FI = never>(
    items: ReadonlyArray<BatchItem<A, E, R>>,
    options: BatchOptions<A, AI, F, FI>
  ) => Effect.Effect<Array<Exit.Exit<Receipt<A, F>, Exclude<E, F | SqlError> | InboxError>>, SqlError, R>

  /** The stored record of a message, if any. */
  readonly lookup: (scope: string, key: string) => Effect.Effect<Option.Option<ProcessedMessage>, InboxUnavailable>

  /**
   * Deletes records older than the retention window, `batchSize` per statement, until none is
   * left; live claims are kept. Returns how many records and statements it took.
   */
  readonly purgeExpired: Effect.Effect<{ readonly deleted: number; readonly batches: number }, InboxUnavailable>

  /**
   * Names the person a message being processed is about. Runs inside the message's transaction
   * (in its handler), so the name is stored with the outcome or not at all.
   */
  readonly markSubject: (message: { readonly scope: string; readonly key: string }, subject: string) => Effect.Effect<
    void,
    SqlError
  >

  /**
   * Removes the stored outcomes of every processed message about `subject` (an erasure): a copy
   * arriving later is no longer a replay and meets whatever refuses it now. Claims in progress
   * are left alone. Runs in the caller's transaction when there is one; answers how many went.
   */
  readonly forgetSubject: (subject: string) => Effect.Effect<number, SqlError>
}

/** Exactly-once processing of messages that are delivered at least once. */
export class Inbox extends Context.Tag("gatehouse/Inbox")<Inbox, InboxShape>() {
  /** The inbox on the process's database and configuration; fails if retention is too short. */
  static readonly layer: Layer.Layer<Inbox, InboxRetentionTooShort, SqlClient.SqlClient | AppConfig> = Layer.effect(
    Inbox,
    Effect.flatMap(AppConfig, (config) =>
      Effect.zipRight(
        validateRetention(config),
        make(optionsFromConfig(config))
      ))
  )

  /** An inbox with explicit settings (tests). */
  static readonly layerWith = (options: Partial<InboxOptions> = {}): Layer.Layer<Inbox, never, SqlClient.SqlClient> =>
    Layer.effect(Inbox, make({ ...defaults, ...options }))

  /** An inbox that injects crashes and lost commits at the given points (tests). */
  static readonly layerFaulty = (
    faults: InboxFaults,
    options: Partial<InboxOptions> = {}
  ): Layer.Layer<Inbox, never, SqlClient.SqlClient> => Layer.effect(Inbox, make({ ...defaults, ...options }, faults))
}

// ---------------------------------------------------------------------------------------------
// Options, faults, retention check

export interface InboxOptions {
  readonly claimLease: Duration.Duration
  readonly waitFor: Duration.Duration
  readonly retention: Duration.Duration
  readonly retentionBatchSize: number
}

const defaults: InboxOptions = {
  claimLease: Duration.seconds(30),
  waitFor: Duration.seconds(5),
  retention: Duration.hours(168),
  retentionBatchSize: 500
}

export const optionsFromConfig = (config: AppConfigShape): InboxOptions => ({
  claimLease: Duration.millis(config.inboxClaimLeaseMs),
  waitFor: Duration.millis(config.inboxWaitMs),
  retention: Duration.hours(config.inboxRetentionHours),
  retentionBatchSize: config.inboxRetentionBatchSize
})

/**
 * Fails unless the retention window (the de-duplication window) is longer than every
 * redelivery horizon of the configuration (`redeliveryHorizons` in Config.ts).
 */
export const validateRetention = (config: AppConfigShape): Effect.Effect<void, InboxRetentionTooShort> => {
  const retentionMs = config.inboxRetentionHours * 3_600_000
  const violated = redeliveryHorizons(config).find((h) => h.ms >= retentionMs)
  return violated === undefined ? Effect.void : Effect.fail(
    new InboxRetentionTooShort({
      retentionHours: config.inboxRetentionHours,
      source: violated.source,
      horizonMs: violated.ms
    })
  )
}

/** Where `layerFaulty` can make the process "die" (standalone path only). */
export type FaultPoint = "afterClaim" | "beforeCommit" | "afterCommit"

export interface InboxFaults {
  /**
   * Consulted at each point; `"crash"` acts as if the process died there: the transaction's
   * connection is cut, nothing is cleaned up, and the call dies with `SimulatedCrash`.
   */
  readonly at?: (point: FaultPoint, message: Message) => Effect.Effect<"continue" | "crash">
  /**
   * Runs in place of the handler transaction's COMMIT. `terminate` cuts the transaction's
   * connection from another one, as a lost network would.
   */
  readonly commit?: (
    message: Message,
    commit: Effect.Effect<void, SqlError>,
    terminate: Effect.Effect<void, SqlError>
  ) => Effect.Effect<void, SqlError>
}

// ---------------------------------------------------------------------------------------------
// Metrics

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

const metrics = {
  firstRuns: counter("gatehouse_inbox_first_runs_total", "Messages whose handler ran and whose outcome was stored"),
  replays: counter("gatehouse_inbox_replays_total", "Redelivered messages answered from the stored outcome"),
  conflicts: counter("gatehouse_inbox_conflicts_total", "Keys reused with a different payload"),
  inProgress: counter("gatehouse_inbox_in_progress_total", "Copies refused because another copy was running"),
  handlerFailures: counter(
    "gatehouse_inbox_handler_failures_total",
    "Handler runs that failed without it being the message's fault (nothing stored)"
  ),
  takeovers: counter("gatehouse_inbox_takeovers_total", "Claims taken over after their lease expired"),
  commitUnknown: counter("gatehouse_inbox_commit_unknown_total", "Commits whose outcome had to be looked up"),
  batchReruns: counter(
    "gatehouse_inbox_batch_reruns_total",
    "Batches whose handlers ran again, each in its own savepoint, because one of them failed"
  ),
  purged: counter("gatehouse_inbox_purged_total", "Processed-message records deleted by retention")
}

// ---------------------------------------------------------------------------------------------
// Implementation

interface Row {
  readonly status: "claimed" | "succeeded" | "rejected"
  readonly fingerprint: string
  readonly outcome: { readonly v?: unknown } | null
  readonly claim_token: string
  readonly lease_live: boolean
}

/** What the stored record says about a delivery, before anything runs. */
type Verdict =
  | { readonly _tag: "Replay"; readonly status: "succeeded" | "rejected"; readonly outcome: unknown }
  | { readonly _tag: "Claimable" }

interface Claim {
  readonly token: string
  readonly attempts: number
}

/** A message of a batch, ready to be claimed under `token`. */
interface BatchEntry {
  readonly index: number
  readonly message: Message
  readonly fingerprint: string
  readonly token: string
}

interface BatchOutcome extends BatchEntry {
  readonly status: "succeeded" | "rejected"
  readonly outcome: string
}

/** What the batch claim learnt about one message. */
interface BatchRow {
  readonly ord: number
  readonly claimed: boolean
  readonly found: boolean
  readonly status: "claimed" | "succeeded" | "rejected" | null
  readonly fingerprint: string | null
  readonly outcome: { readonly v?: unknown } | null
  readonly lease_live: boolean
}

/** In-process signals between an attempt and its retry loop. */
class Fenced extends Data.TaggedError("Fenced")<{}> {}
class Transient extends Data.TaggedError("Transient")<{ readonly cause: unknown; readonly detail: string }> {}

const isCrash = (cause: Cause.Cause<unknown>) =>
  Cause.defects(cause).pipe((d) => [...d].some((e) => e instanceof SimulatedCrash))

/** A transient database error, as a failure or as the defect `withTransaction` makes of a failed rollback. */
const transientIn = (cause: Cause.Cause<unknown>): Option.Option<unknown> =>
  Option.orElse(
    Option.filter(Cause.failureOption(cause), isTransient),
    () => Option.filter(Cause.dieOption(cause), isTransient)
  )

const unavailable = (detail: string) => (cause: unknown) =>
  Effect.zipRight(
    Effect.logWarning("inbox database failure").pipe(Effect.annotateLogs({ error: String(cause) })),
    Effect.fail(new InboxUnavailable({ detail }))
  )

/** Builds the inbox. `faults` is for tests only (`layerFaulty`). */
export const make = (options: InboxOptions, faults: InboxFaults = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const leaseMs = Duration.toMillis(options.claimLease)
    const retentionMs = Duration.toMillis(options.retention)

    // A 64-bit advisory lock per message: taken (non-blocking) before claiming, and for the whole
    // handler transaction, so a copy never queues behind a running one on a row lock.
    const lockText = (m: Message) => `${m.scope.length}:${m.scope}/${m.key}`
    const lockKey = (m: Message) => sql`hashtextextended(${lockText(m)}, 0)`

    const readRow = (m: Message, lock = false) =>
      Effect.map(
        sql<Row>`
          SELECT status, fingerprint, outcome, claim_token::text AS claim_token,
                 coalesce(lease_until > clock_timestamp(), false) AS lease_live
          FROM inbox_messages WHERE scope = ${m.scope} AND key = ${m.key}
          ${sql.literal(lock ? "FOR SHARE" : "")}
        `,
        (rows) => Option.fromNullable(rows[0])
      )

    const verdict = (m: Message, fingerprint: string, row: Option.Option<Row>): Effect.Effect<Verdict, InboxError> => {
      if (Option.isNone(row)) return Effect.succeed({ _tag: "Claimable" })
      const r = row.value
      if (r.fingerprint !== fingerprint) {
        return Effect.zipRight(
          Effect.zipRight(
            Metric.increment(metrics.conflicts),
            Effect.logInfo("idempotency key reused with another payload")
          ),
          Effect.fail(new IdempotencyKeyReused({ key: m.key, fingerprint: r.fingerprint }))
        )
      }
      if (r.status !== "claimed") return Effect.succeed({ _tag: "Replay", status: r.status, outcome: r.outcome?.v })
      if (r.lease_live) return Effect.fail(new MessageInProgress({ key: m.key }))
      return Effect.succeed({ _tag: "Claimable" })
    }

    /**
     * Inserts a claim, or takes over one whose lease expired (same payload only). Returns the
     * attempt number, or none when another copy holds the key or finished meanwhile.
     */
    const upsertClaim = (m: Message, fingerprint: string, token: string) =>
      Effect.gen(function*() {
        const [lock] = yield* sql<{ locked: boolean }>`SELECT pg_try_advisory_xact_lock(${lockKey(m)}) AS locked`
        if (!lock?.locked) return Option.none<number>()
        const rows = yield* sql<{ attempts: number }>`
          INSERT INTO inbox_messages (scope, key, fingerprint, status, claim_token, lease_until)
          VALUES (${m.scope}, ${m.key}, ${fingerprint}, 'claimed', ${token}::uuid,
                  clock_timestamp() + ${leaseMs} * interval '1 millisecond')
          ON CONFLICT (scope, key) DO UPDATE
            SET claim_token = excluded.claim_token, lease_until = excluded.lease_until,
                claimed_at = clock_timestamp(), attempts = inbox_messages.attempts + 1
            WHERE inbox_messages.status = 'claimed'
              AND inbox_messages.lease_until <= clock_timestamp()
              AND inbox_messages.fingerprint = excluded.fingerprint
          RETURNING attempts
        `
        return Option.map(Option.fromNullable(rows[0]), (r) => r.attempts)
      })

    const complete = (m: Message, token: string, status: "succeeded" | "rejected", outcome: string) =>
      sql`
        UPDATE inbox_messages
        SET status = ${status}, outcome = ${outcome}::jsonb, completed_at = now(), lease_until = NULL
        WHERE scope = ${m.scope} AND key = ${m.key} AND claim_token = ${token}::uuid AND status = 'claimed'
      `

    const releaseClaim = (m: Message, token: string) =>
      sql`
        DELETE FROM inbox_messages
        WHERE scope = ${m.scope} AND key = ${m.key} AND claim_token = ${token}::uuid AND status = 'claimed'
      `.pipe(
        Effect.retry({ schedule: transientDatabase, while: isTransient }),
        Effect.catchAll((error) =>
          Effect.logWarning("claim not released, it expires after its lease").pipe(
            Effect.annotateLogs({ error: String(error) })
          )
        )
      )

    const crashAt = (point: FaultPoint, m: Message) =>
      faults.at === undefined ? Effect.void : Effect.flatMap(
        faults.at(point, m),
        (action) => action === "crash" ? Effect.die(new SimulatedCrash({ point })) : Effect.void
      )

    const receive = <A, AI, E, R, F = never, FI = never>(
      message: Message,
      handler: Effect.Effect<A, E, R>,
      opts: ProcessOptions<A, AI, F, FI>
    ): Effect.Effect<Receipt<A, F>, Exclude<E, F | SqlError> | InboxError, R> => {
      const fingerprint = fingerprintOf(message.payload)
      const isRejection = opts.failure === undefined ? () => false : Schema.is(opts.failure)

      const encode = (schema: Schema.Schema<any, any>, value: unknown) =>
        Effect.map(Schema.encode(schema)(value), (v) => JSON.stringify({ v }))
      const store = (result: Either.Either<A, F>): Effect.Effect<readonly ["succeeded" | "rejected", string]> =>
        Either.isRight(result)
          ? Effect.orDie(Effect.map(encode(opts.success, result.right), (text) => ["succeeded", text] as const))
          : Effect.orDie(Effect.map(encode(opts.failure!, result.left), (text) => ["rejected", text] as const))

      const replay = (v: Extract<Verdict, { _tag: "Replay" }>) =>
        Effect.gen(function*() {
          const result: Either.Either<A, F> = v.status === "succeeded"
            ? Either.right(yield* Schema.decodeUnknown(opts.success)(v.outcome))
            : Either.left(
              yield* Schema.decodeUnknown(opts.failure ?? (Schema.Never as any as Schema.Schema<F, FI>))(v.outcome)
            )
          yield* Metric.increment(metrics.replays)
          yield* Effect.logDebug("duplicate message, replaying the stored outcome")
          return { replayed: true, result, fingerprint } satisfies Receipt<A, F>
        }).pipe(
          Effect.catchIf(
            ParseResult.isParseError,
            (e) => Effect.dieMessage(`the stored outcome of ${message.key} no longer decodes: ${e.message}`)
          )
        )

      // Runs the handler in a savepoint: a rejection rolls its writes back and is still stored.
      const runHandler = Effect.gen(function*() {
        const exit = yield* Effect.exit(sql.withTransaction(handler))
        if (Exit.isSuccess(exit)) return Option.some(Either.right<A>(exit.value) as Either.Either<A, F>)
        const failure = Cause.failureOption(exit.cause)
        if (Option.isSome(failure) && isRejection(failure.value)) {
          return Option.some(Either.left(failure.value as unknown as F) as Either.Either<A, F>)
        }
        yield* Metric.increment(metrics.handlerFailures)
        return yield* Effect.failCause(exit.cause)
      })

      const firstRun = (result: Either.Either<A, F>, attempts: number) =>
        Effect.gen(function*() {
          yield* Metric.increment(
            Metric.tagged(metrics.firstRuns, "outcome", Either.isRight(result) ? "succeeded" : "rejected")
          )
          if (attempts > 1) {
            yield* Metric.increment(metrics.takeovers)
            yield* Effect.logWarning("message claim taken over after its lease expired").pipe(
              Effect.annotateLogs({ attempt: attempts })
            )
          }
          return { replayed: false, result, fingerprint } satisfies Receipt<A, F>
        })

      // --- Inside the caller's transaction: one savepoint, committed by the caller. -------------
      const inTransaction = sql.withTransaction(Effect.gen(function*() {
        const v = yield* verdict(message, fingerprint, yield* readRow(message))
        if (v._tag === "Replay") return yield* replay(v)

        const token = Crypto.randomUUID()
        const attempts = yield* upsertClaim(message, fingerprint, token)
        if (Option.isNone(attempts)) {
          const again = yield* verdict(message, fingerprint, yield* readRow(message))
          if (again._tag === "Replay") return yield* replay(again)
          return yield* new MessageInProgress({ key: message.key })
        }

        const result = Option.getOrThrow(yield* runHandler)
        const [status, text] = yield* store(result)
        yield* complete(message, token, status, text)
        return yield* firstRun(result, attempts.value)
      })).pipe(
        Effect.catchIf(
          (e): e is SqlError => e instanceof SqlError,
          (e) => isTransient(e) ? unavailable("the database failed; nothing was stored")(e) : Effect.die(e)
        )
      )

      // --- Standalone: commit a claim, then run the handler in a transaction of its own. --------

      type Ran =
        | { readonly _tag: "Replay"; readonly verdict: Extract<Verdict, { _tag: "Replay" }> }
        | { readonly _tag: "Committed"; readonly claim: Claim; readonly result: Either.Either<A, F> }
        | {
          readonly _tag: "CommitUnknown"
          readonly claim: Claim
          readonly result: Either.Either<A, F>
          readonly cause: unknown
        }
        | {
          readonly _tag: "Failed"
          readonly claim: Claim
          readonly cause: Cause.Cause<unknown>
          readonly release: boolean
        }

      /**
       * Phase one commits a claim; phase two runs the handler in a transaction that first re-checks
       * the claim under a row lock. Both use one reserved connection, so a claimed message never
       * waits for the pool (and outlives its lease) before it runs.
       */
      const claimAndRun = (
        restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
      ): Effect.Effect<Ran, E | InboxError | SqlError, R> =>
        Effect.scoped(Effect.gen(function*() {
          const conn = yield* restore(sql.reserve)
          const on = <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) =>
            Effect.provideService(effect, SqlClient.TransactionConnection, [conn, 0] as const)
          const run = (statement: string) => conn.executeUnprepared(statement, [], undefined)
          const terminate = Effect.flatMap(
            on(sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`),
            ([row]) =>
              sql`SELECT pg_terminate_backend(${row!.pid})`.pipe(
                Effect.asVoid,
                Effect.mapInputContext((ctx: Context.Context<never>) =>
                  Context.omit(SqlClient.TransactionConnection)(ctx)
                )
              )
          )

          const seen = yield* restore(on(Effect.flatMap(readRow(message), (row) => verdict(message, fingerprint, row))))
          if (seen._tag === "Replay") return { _tag: "Replay", verdict: seen } satisfies Ran

          const token = Crypto.randomUUID()
          const claimed = yield* Effect.exit(on(Effect.gen(function*(): Effect.fn.Return<
            Either.Either<Claim, Extract<Verdict, { _tag: "Replay" }>>,
            InboxError | SqlError
          > {
            yield* run("BEGIN")
            const attempts = yield* upsertClaim(message, fingerprint, token)
            if (Option.isSome(attempts)) return Either.right<Claim>({ token, attempts: attempts.value })
            const again = yield* verdict(message, fingerprint, yield* readRow(message))
            if (again._tag === "Replay") return Either.left(again)
            return yield* new MessageInProgress({ key: message.key })
          })))
          if (Exit.isFailure(claimed)) {
            yield* run("ROLLBACK").pipe(Effect.ignore)
            return yield* Effect.failCause(claimed.cause)
          }
          if (Either.isLeft(claimed.value)) {
            yield* run("ROLLBACK").pipe(Effect.ignore)
            return { _tag: "Replay", verdict: claimed.value.left } satisfies Ran
          }
          const c = claimed.value.right
          const claimCommitted = yield* Effect.exit(run("COMMIT"))
          if (Exit.isFailure(claimCommitted)) {
            return { _tag: "Failed", claim: c, cause: claimCommitted.cause, release: true } satisfies Ran
          }
          yield* crashAt("afterClaim", message)

          const body = yield* Effect.exit(on(Effect.gen(function*() {
            yield* run("BEGIN")
            yield* sql`SELECT pg_advisory_xact_lock(${lockKey(message)})`
            const held = yield* sql`
              SELECT 1 FROM inbox_messages
              WHERE scope = ${message.scope} AND key = ${message.key}
                AND claim_token = ${c.token}::uuid AND status = 'claimed'
              FOR UPDATE
            `
            if (held.length === 0) return yield* new Fenced()
            const result = Option.getOrThrow(yield* restore(runHandler))
            const [status, text] = yield* store(result)
            yield* complete(message, c.token, status, text)
            if (faults.at !== undefined && (yield* faults.at("beforeCommit", message)) === "crash") {
              yield* terminate.pipe(Effect.ignore)
              return yield* Effect.die(new SimulatedCrash({ point: "beforeCommit" }))
            }
            return result
          })))

          if (Exit.isFailure(body)) {
            if (isCrash(body.cause)) return yield* Effect.orDie(Effect.failCause(body.cause))
            yield* run("ROLLBACK").pipe(Effect.ignore)
            const fenced = Option.exists(Cause.failureOption(body.cause), (e) => e instanceof Fenced)
            return { _tag: "Failed", claim: c, cause: body.cause, release: !fenced } satisfies Ran
          }

          const commit = run("COMMIT").pipe(Effect.asVoid)
          const committed = yield* Effect.exit(
            faults.commit === undefined ? commit : faults.commit(message, commit, terminate)
          )
          return Exit.isSuccess(committed)
            ? { _tag: "Committed", claim: c, result: body.value } satisfies Ran
            : {
              _tag: "CommitUnknown",
              claim: c,
              result: body.value,
              cause: Cause.squash(committed.cause)
            } satisfies Ran
        }))

      /** After a failed COMMIT: the record on another connection says whether it happened. */
      const settle = (c: Claim, result: Either.Either<A, F>, cause: unknown) =>
        Effect.gen(function*() {
          yield* Metric.increment(metrics.commitUnknown)
          yield* Effect.logWarning("commit outcome unknown, looking the message up").pipe(
            Effect.annotateLogs({ error: String(cause) })
          )
          // FOR SHARE waits for a backend that is still finishing the transaction.
          const row = yield* readRow(message, true).pipe(
            Effect.retry({ schedule: transientDatabase, while: isTransient }),
            Effect.timeout(Duration.seconds(10)),
            Effect.catchAll(() => new InboxUnavailable({ detail: "the commit outcome is unknown; retry the message" }))
          )
          const ours = Option.filter(row, (r) => r.claim_token === c.token)
          if (Option.exists(ours, (r) => r.status !== "claimed")) {
            yield* Effect.logInfo("commit outcome settled: committed")
            return yield* firstRun(result, c.attempts)
          }
          if (Option.isSome(ours)) yield* releaseClaim(message, c.token)
          yield* Effect.logInfo("commit outcome settled: not committed")
          return yield* new InboxUnavailable({ detail: "the commit failed; nothing was stored, retry the message" })
        })

      const standalone = Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const ran = yield* claimAndRun(restore)
          switch (ran._tag) {
            case "Replay":
              return yield* replay(ran.verdict)
            case "Committed": {
              yield* crashAt("afterCommit", message)
              return yield* firstRun(ran.result, ran.claim.attempts)
            }
            case "CommitUnknown":
              return yield* settle(ran.claim, ran.result, ran.cause)
            case "Failed": {
              if (ran.release) yield* releaseClaim(message, ran.claim.token)
              if (Cause.isInterruptedOnly(ran.cause)) return yield* Effect.failCause(ran.cause)
              const fenced = Option.exists(Cause.failureOption(ran.cause), (e) => e instanceof Fenced)
              if (fenced) return yield* new Fenced()
              const transient = transientIn(ran.cause)
              if (Option.isSome(transient)) {
                return yield* new Transient({
                  cause: transient.value,
                  detail: "the database failed; nothing was stored"
                })
              }
              return yield* Effect.failCause(ran.cause as Cause.Cause<E>)
            }
          }
        })
      ).pipe(
        Effect.catchIf(
          (e): e is SqlError => e instanceof SqlError,
          (e) =>
            isTransient(e)
              ? Effect.fail(new Transient({ cause: e, detail: "the database failed; nothing was stored" }))
              : Effect.die(e)
        ),
        Effect.retry({ while: (e) => e instanceof Fenced, times: 5 }),
        Effect.tapError((e) =>
          e instanceof Transient
            ? Effect.logWarning("message attempt failed, retrying").pipe(
              Effect.annotateLogs({ error: String(e.cause) })
            )
            : Effect.void
        ),
        Effect.retry({ schedule: transientDatabase, while: (e) => e instanceof Transient }),
        Effect.catchIf(
          (e): e is Transient | Fenced => e instanceof Transient || e instanceof Fenced,
          (e) =>
            Effect.zipRight(
              Effect.logError("message attempt gave up").pipe(
                Effect.annotateLogs({ error: String(e instanceof Transient ? e.cause : e) })
              ),
              Effect.fail(
                new InboxUnavailable({
                  detail: e instanceof Transient ? e.detail : "the message's claim kept changing hands; retry"
                })
              )
            )
        )
      )

      const attempt = Effect.flatMap(
        Effect.serviceOption(SqlClient.TransactionConnection),
        (tx) => Option.isSome(tx) ? inTransaction : standalone
      )

      const waitFor = opts.waitFor ?? options.waitFor
      return (opts.concurrent === "fail" ? attempt : Effect.retry(attempt, {
        schedule: inboxWait(waitFor),
        while: (e) => e instanceof MessageInProgress
      })).pipe(
        Effect.tapError((e) =>
          e instanceof MessageInProgress
            ? Effect.zipRight(Metric.increment(metrics.inProgress), Effect.logDebug("another copy is in progress"))
            : Effect.void
        ),
        Effect.annotateLogs({ component: "inbox", scope: message.scope, messageId: message.key }),
        Effect.withSpan("Inbox.receive", { attributes: { scope: message.scope, messageId: message.key } })
      ) as Effect.Effect<Receipt<A, F>, Exclude<E, F | SqlError> | InboxError, R>
    }

    const process: InboxShape["process"] = (message, handler, opts) =>
      Effect.flatMap(
        receive(message, handler, opts),
        (receipt) =>
          Either.isRight(receipt.result) ? Effect.succeed(receipt.result.right) : Effect.fail(receipt.result.left)
      ) as any

    // --- Batches inside the caller's transaction: one statement claims, one records. -----------

    /**
     * Claims every key of a batch that has no record yet (non-blocking advisory lock, then the
     * insert) and reads the records of the others, in one statement. A key whose record appeared
     * between the statement's snapshot and its insert comes back neither claimed nor found.
     */
    const claimBatch = (entries: ReadonlyArray<BatchEntry>) =>
      sql<BatchRow>`
        WITH input AS (
          SELECT * FROM unnest(
            ${entries.map((e) => e.message.scope)}::text[],
            ${entries.map((e) => e.message.key)}::text[],
            ${entries.map((e) => e.fingerprint)}::text[],
            ${entries.map((e) => e.token)}::uuid[],
            ${entries.map((e) => lockText(e.message))}::text[]
          ) WITH ORDINALITY AS i(scope, key, fingerprint, token, lock_text, ord)
        ), seen AS MATERIALIZED (
          SELECT i.*, m.scope IS NOT NULL AS found, m.status, m.fingerprint AS stored_fingerprint, m.outcome,
                 coalesce(m.lease_until > clock_timestamp(), false) AS lease_live
          FROM input i LEFT JOIN inbox_messages m ON m.scope = i.scope AND m.key = i.key
        ), claimed AS (
          INSERT INTO inbox_messages (scope, key, fingerprint, status, claim_token, lease_until)
          SELECT scope, key, fingerprint, 'claimed', token, clock_timestamp() + ${leaseMs} * interval '1 millisecond'
          FROM seen
          WHERE CASE WHEN found THEN false ELSE pg_try_advisory_xact_lock(hashtextextended(lock_text, 0)) END
          ORDER BY ord
          ON CONFLICT (scope, key) DO NOTHING
          RETURNING scope, key
        )
        SELECT s.ord::int AS ord, c.key IS NOT NULL AS claimed, s.found, s.status,
               s.stored_fingerprint AS fingerprint, s.outcome, s.lease_live
        FROM seen s LEFT JOIN claimed c ON c.scope = s.scope AND c.key = s.key
        ORDER BY s.ord
      `

    /** Stores the outcomes of a batch's first runs and drops the claims of the runs that failed. */
    const recordBatch = (done: ReadonlyArray<BatchOutcome>, dropped: ReadonlyArray<BatchEntry>) =>
      done.length + dropped.length === 0 ? Effect.void : sql<{ done: number; dropped: number }>`
        WITH done AS (
          UPDATE inbox_messages AS m
          SET status = o.status, outcome = o.outcome::jsonb, completed_at = now(), lease_until = NULL
          FROM unnest(
            ${done.map((d) => d.message.scope)}::text[],
            ${done.map((d) => d.message.key)}::text[],
            ${done.map((d) => d.token)}::uuid[],
            ${done.map((d) => d.status)}::text[],
            ${done.map((d) => d.outcome)}::text[]
          ) AS o(scope, key, token, status, outcome)
          WHERE m.scope = o.scope AND m.key = o.key AND m.claim_token = o.token AND m.status = 'claimed'
          RETURNING 1
        ), dropped AS (
          DELETE FROM inbox_messages AS m
          USING unnest(
            ${dropped.map((d) => d.message.scope)}::text[],
            ${dropped.map((d) => d.message.key)}::text[],
            ${dropped.map((d) => d.token)}::uuid[]
          ) AS r(scope, key, token)
          WHERE m.scope = r.scope AND m.key = r.key AND m.claim_token = r.token AND m.status = 'claimed'
          RETURNING 1
        )
        SELECT (SELECT count(*) FROM done)::int AS done, (SELECT count(*) FROM dropped)::int AS dropped
      `.pipe(Effect.flatMap(([row]) =>
        // This transaction inserted the claims: nothing else can have changed them.
        row?.done === done.length && row.dropped === dropped.length ? Effect.void : Effect.dieMessage(
          `inbox batch stored ${row?.done} of ${done.length} outcomes and dropped ${row?.dropped} of ${dropped.length} claims`
        )
      ))

    const receiveBatch = <A, AI, E, R, F = never, FI = never>(
      items: ReadonlyArray<BatchItem<A, E, R>>,
      opts: BatchOptions<A, AI, F, FI>
    ): Effect.Effect<Array<Exit.Exit<Receipt<A, F>, Exclude<E, F | SqlError> | InboxError>>, SqlError, R> => {
      type Answer = Exit.Exit<Receipt<A, F>, Exclude<E, F | SqlError> | InboxError>
      const isRejection = opts.failure === undefined ? () => false : Schema.is(opts.failure)
      const single: ProcessOptions<A, AI, F, FI> = { ...opts, concurrent: "fail" }
      const logged = (m: Message) => Effect.annotateLogs({ component: "inbox", scope: m.scope, messageId: m.key })

      const decodeStored = (m: Message, status: "succeeded" | "rejected", outcome: unknown) =>
        (status === "succeeded"
          ? Effect.map(Schema.decodeUnknown(opts.success)(outcome), (a) => Either.right(a) as Either.Either<A, F>)
          : Effect.map(
            Schema.decodeUnknown(opts.failure ?? (Schema.Never as any as Schema.Schema<F, FI>))(outcome),
            (f) => Either.left(f) as Either.Either<A, F>
          )).pipe(
            Effect.catchAll((e) => Effect.dieMessage(`the stored outcome of ${m.key} no longer decodes: ${e.message}`))
          )

      const encodeOutcome = (result: Either.Either<A, F>): Effect.Effect<readonly ["succeeded" | "rejected", string]> =>
        Effect.orDie<readonly ["succeeded" | "rejected", string], ParseResult.ParseError, never>(
          Either.isRight(result)
            ? Effect.map(
              Schema.encode(opts.success)(result.right),
              (v) => ["succeeded", JSON.stringify({ v })] as const
            )
            : Effect.map(Schema.encode(opts.failure!)(result.left), (v) => ["rejected", JSON.stringify({ v })] as const)
        )

      /** The handler in a savepoint of its own; a transient database failure rolls it back and runs it again. */
      const runHandler = (handler: Effect.Effect<A, E, R>) =>
        Effect.gen(function*() {
          let exit = yield* Effect.exit(sql.withTransaction(handler))
          for (let again = 0; again < 2 && Exit.isFailure(exit); again++) {
            if (!Option.exists(Cause.failureOption(exit.cause), isTransient)) break
            exit = yield* Effect.exit(sql.withTransaction(handler))
          }
          return exit
        })

      /**
       * Runs the handlers of the claimed messages, in order. Optimistically all of them in one
       * savepoint, which saves a round trip per message; if one fails (rejections included), that
       * savepoint is rolled back and every handler runs again in a savepoint of its own, so that the
       * failure stays with its message. Handlers write only in the transaction, so a rolled-back
       * first run leaves nothing behind.
       */
      const runClaimed = (claimed: ReadonlyArray<BatchEntry>) =>
        Effect.gen(function*() {
          if (claimed.length > 1) {
            const together = yield* Effect.exit(
              sql.withTransaction(Effect.forEach(claimed, (entry) => items[entry.index]!.handler))
            )
            if (Exit.isSuccess(together)) return together.value.map((a) => Exit.succeed(a) as Exit.Exit<A, E>)
            yield* Metric.increment(metrics.batchReruns)
          }
          return yield* Effect.forEach(claimed, (entry) => runHandler(items[entry.index]!.handler))
        })

      /** A handler failure that stores nothing, as the one-message path reports it. */
      const failed = (m: Message, cause: Cause.Cause<E>): Effect.Effect<Answer> => {
        const failure = Cause.failureOption(cause)
        if (Option.isNone(failure) || !(failure.value instanceof SqlError)) {
          return Effect.succeed(Exit.failCause(cause as Cause.Cause<Exclude<E, F | SqlError>>))
        }
        const error = failure.value
        if (!isTransient(error)) return Effect.succeed(Exit.die(error))
        return Effect.as(
          Effect.logWarning("inbox database failure").pipe(Effect.annotateLogs({ error: String(error) }), logged(m)),
          Exit.fail(new InboxUnavailable({ detail: "the database failed; nothing was stored" }))
        )
      }

      /** Keys in a round are distinct; a later copy of a key waits for the next round. */
      const round = (indices: ReadonlyArray<number>, answers: Array<Answer>) =>
        Effect.gen(function*() {
          const entries: Array<BatchEntry> = []
          for (const index of indices) {
            const message = items[index]!.message
            const fingerprint = Either.try(() => fingerprintOf(message.payload))
            if (Either.isLeft(fingerprint)) answers[index] = Exit.die(fingerprint.left)
            else entries.push({ index, message, fingerprint: fingerprint.right, token: Crypto.randomUUID() })
          }
          if (entries.length === 0) return
          const rows = yield* claimBatch(entries)
          if (rows.length !== entries.length) {
            return yield* Effect.dieMessage(`inbox batch claim answered ${rows.length} rows for ${entries.length} keys`)
          }

          const claimed: Array<BatchEntry> = []
          const settleAlone: Array<BatchEntry> = []
          let replays = 0
          for (const [n, entry] of entries.entries()) {
            const row = rows[n]!
            const { index, message } = entry
            if (row.claimed) {
              claimed.push(entry)
            } else if (row.found && row.fingerprint !== entry.fingerprint) {
              yield* Metric.increment(metrics.conflicts)
              yield* Effect.logInfo("idempotency key reused with another payload").pipe(logged(message))
              answers[index] = Exit.fail(new IdempotencyKeyReused({ key: message.key, fingerprint: row.fingerprint! }))
            } else if (row.found && row.status !== "claimed") {
              replays += 1
              const result = yield* decodeStored(message, row.status!, row.outcome?.v)
              answers[index] = Exit.succeed({ replayed: true, result, fingerprint: entry.fingerprint })
            } else if (row.found && row.lease_live) {
              yield* Metric.increment(metrics.inProgress)
              answers[index] = Exit.fail(new MessageInProgress({ key: message.key }))
            } else {
              // A claim whose holder's lease ran out, or a race lost to another transaction: rare,
              // and settled by the one-message path (take over, replay or in progress).
              settleAlone.push(entry)
            }
          }

          const done: Array<BatchOutcome & { readonly result: Either.Either<A, F> }> = []
          const dropped: Array<BatchEntry> = []
          const exits = yield* runClaimed(claimed)
          for (const [n, entry] of claimed.entries()) {
            const exit = exits[n]!
            const result: Option.Option<Either.Either<A, F>> = Exit.isSuccess(exit)
              ? Option.some(Either.right(exit.value))
              : Option.filterMap(
                Cause.failureOption(exit.cause),
                (e) => isRejection(e) ? Option.some(Either.left(e as unknown as F)) : Option.none()
              )
            if (Option.isSome(result)) {
              const [status, outcome] = yield* encodeOutcome(result.value)
              done.push({ ...entry, status, outcome, result: result.value })
            } else {
              yield* Metric.increment(metrics.handlerFailures)
              dropped.push(entry)
              answers[entry.index] = yield* failed(entry.message, (exit as Exit.Failure<A, E>).cause)
            }
          }
          for (const { index, message } of settleAlone) {
            answers[index] = yield* Effect.exit(receive(message, items[index]!.handler, single))
          }

          yield* recordBatch(done, dropped)
          for (const d of done) {
            answers[d.index] = Exit.succeed({ replayed: false, result: d.result, fingerprint: d.fingerprint })
          }
          const rejected = done.filter((d) => d.status === "rejected").length
          yield* Metric.incrementBy(Metric.tagged(metrics.firstRuns, "outcome", "succeeded"), done.length - rejected)
          yield* Metric.incrementBy(Metric.tagged(metrics.firstRuns, "outcome", "rejected"), rejected)
          yield* Metric.incrementBy(metrics.replays, replays)
          if (replays > 0) {
            yield* Effect.logDebug("duplicate messages, replaying the stored outcomes").pipe(
              Effect.annotateLogs({ component: "inbox", replays })
            )
          }
        })

      return Effect.gen(function*() {
        if (Option.isNone(yield* Effect.serviceOption(SqlClient.TransactionConnection))) {
          return yield* Effect.dieMessage("Inbox.receiveBatch must run inside a transaction")
        }
        const answers = new Array<Answer>(items.length)
        const rounds: Array<Array<number>> = []
        const copies = new Map<string, number>()
        items.forEach(({ message }, index) => {
          const id = lockText(message)
          const copy = copies.get(id) ?? 0
          copies.set(id, copy + 1)
          ;(rounds[copy] ??= []).push(index)
        })
        for (const indices of rounds) yield* round(indices, answers)
        return answers
      }).pipe(
        Effect.withSpan("Inbox.receiveBatch", { attributes: { messages: items.length }, captureStackTrace: false })
      )
    }

    const lookup = (scope: string, key: string) =>
      sql<ProcessedMessage>`
        SELECT scope, key, fingerprint, status, attempts, created_at AS "createdAt", completed_at AS "completedAt"
        FROM inbox_messages WHERE scope = ${scope} AND key = ${key}
      `.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.retry({ schedule: transientDatabase, while: isTransient }),
        Effect.catchAll(unavailable("the inbox database failed"))
      )

    // Oldest first, a small batch per statement; SKIP LOCKED leaves rows a delivery is touching.
    const purgeBatch = sql<{ deleted: number }>`
      WITH doomed AS (
        SELECT scope, key FROM inbox_messages
        WHERE created_at < now() - ${retentionMs} * interval '1 millisecond'
          AND (status <> 'claimed' OR lease_until <= now())
        ORDER BY created_at
        LIMIT ${options.retentionBatchSize}
        FOR UPDATE SKIP LOCKED
      ), gone AS (
        DELETE FROM inbox_messages m USING doomed d WHERE m.scope = d.scope AND m.key = d.key RETURNING 1
      )
      SELECT count(*)::int AS deleted FROM gone
    `.pipe(
      Effect.map((rows) => rows[0]?.deleted ?? 0),
      Effect.retry({ schedule: transientDatabase, while: isTransient })
    )

    const purgeExpired = Effect.gen(function*() {
      let deleted = 0
      let batches = 0
      while (true) {
        const n = yield* purgeBatch
        batches += 1
        deleted += n
        if (n < options.retentionBatchSize) break
      }
      if (deleted > 0) {
        yield* Metric.incrementBy(metrics.purged, deleted)
        yield* Effect.logDebug("expired processed messages deleted").pipe(Effect.annotateLogs({ deleted }))
      }
      return { deleted, batches }
    }).pipe(
      Effect.catchAll(unavailable("the inbox database failed")),
      Effect.annotateLogs({ component: "inbox-retention" }),
      Effect.withSpan("Inbox.purgeExpired")
    )

    const markSubject = (message: { readonly scope: string; readonly key: string }, subject: string) =>
      Effect.asVoid(sql`
        UPDATE inbox_messages SET subject = ${subject}
        WHERE scope = ${message.scope} AND key = ${message.key} AND status = 'claimed'
      `)

    const forgetSubject = (subject: string) =>
      Effect.map(
        sql<{ n: number }>`
          WITH gone AS (DELETE FROM inbox_messages WHERE subject = ${subject} AND status <> 'claimed' RETURNING 1)
          SELECT count(*)::int AS n FROM gone
        `,
        (rows) => rows[0]?.n ?? 0
      )

    return Inbox.of({ process, receive, receiveBatch, lookup, purgeExpired, markSubject, forgetSubject })
  })

/** Whether an error is one a sender may simply retry later (nothing was stored). */
export const isRetryable = (error: unknown): boolean =>
  error instanceof InboxUnavailable || error instanceof MessageInProgress ||
  (Predicate.isTagged(error, "SqlError") && isTransient(error))

/**
 * The retention loop: every `interval`, deletes expired records in small batches. A failed pass
 * is logged and the next one tries again; run it under `supervised` for defects.
 */
export const retentionLoop = (interval: Duration.DurationInput) =>
  Effect.flatMap(Inbox, (inbox) =>
    Effect.forever(
      inbox.purgeExpired.pipe(
        Effect.catchAll((error) =>
          Effect.logWarning("inbox retention pass failed, retrying later").pipe(
            Effect.annotateLogs({ component: "inbox-retention", error: error.message })
          )
        ),
        Effect.zipRight(Effect.sleep(interval))
      )
    ))
