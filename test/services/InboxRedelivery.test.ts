import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, layer } from "@effect/vitest"
import {
  Cause,
  Context,
  Data,
  Duration,
  Effect,
  Either,
  Exit,
  FastCheck,
  FiberRef,
  Layer,
  Option,
  Redacted
} from "effect"
import * as Crypto from "node:crypto"
import { pgClientLayer } from "../../src/layers/Database.js"
import { isTransient } from "../../src/services/Database.js"
import {
  type InboxFaults,
  type InboxShape,
  InboxUnavailable,
  make as makeInbox,
  MessageInProgress,
  SimulatedCrash
} from "../../src/services/Inbox.js"
import { TestDatabase, TestDatabaseLive } from "../support/Database.js"
import { AmountInvalid, Applied, apply, createLedger } from "../support/Inbox.js"

/**
 * Redelivery as a property: for any schedule of deliveries (duplicates, reorderings, truly
 * concurrent copies through two independent pools, as two processes would have, handler failures,
 * crashes before commit, after commit and during COMMIT, copies inside a consumer's transaction),
 * once the sender has redelivered every message until it got an answer, each distinct message
 * has had exactly one effect, and every answer any delivery got was the first outcome or a typed
 * retryable error.
 */

const faults = [
  "none",
  "crashAfterClaim",
  "crashBeforeCommit",
  "crashAfterCommit",
  "commitLost",
  "commitCut",
  "handlerFails"
] as const
type Fault = typeof faults[number]

/** The fault planned for the delivery running on this fiber; the inbox's hooks read it. */
const planned = FiberRef.unsafeMake<Fault>("none")

const injected: InboxFaults = {
  at: (point) =>
    Effect.map(FiberRef.get(planned), (fault) =>
      (fault === "crashAfterClaim" && point === "afterClaim") ||
        (fault === "crashBeforeCommit" && point === "beforeCommit") ||
        (fault === "crashAfterCommit" && point === "afterCommit")
        ? "crash"
        : "continue"),
  commit: (_, commit, terminate) =>
    Effect.flatMap(FiberRef.get(planned), (fault) => {
      switch (fault) {
        case "commitLost":
          return commit.pipe(
            Effect.zipRight(terminate),
            Effect.zipRight(Effect.fail(new SqlError({ cause: { code: "08006" }, message: "Connection terminated" })))
          )
        case "commitCut":
          return Effect.zipRight(terminate, commit)
        default:
          return commit
      }
    })
}

class Flaky extends Data.TaggedError("Flaky")<{}> {}

/** A second pool on the same database: the other "process". */
class OtherPool extends Context.Tag("test/OtherPool")<OtherPool, Context.Context<SqlClient.SqlClient>>() {}

const OtherPoolLive = Layer.scoped(
  OtherPool,
  Effect.flatMap(TestDatabase, (db) =>
    Layer.build(
      pgClientLayer({ url: Redacted.make(db.url), maxConnections: 10, connectTimeoutMs: 5000 }).pipe(Layer.orDie)
    ))
)

const TestLive = Layer.effectDiscard(createLedger).pipe(
  Layer.provideMerge(OtherPoolLive),
  Layer.provideMerge(TestDatabaseLive)
)

const inboxOptions = {
  claimLease: Duration.millis(250),
  waitFor: Duration.seconds(10),
  retention: Duration.hours(1),
  retentionBatchSize: 100
}

const delivery = FastCheck.record({
  message: FastCheck.nat(7),
  fault: FastCheck.oneof(
    { weight: 4, arbitrary: FastCheck.constant<Fault>("none") },
    { weight: 3, arbitrary: FastCheck.constantFrom(...faults) }
  ),
  other: FastCheck.boolean(),
  mode: FastCheck.constantFrom("wait" as const, "fail" as const),
  consumer: FastCheck.boolean()
})

type Delivery = typeof delivery extends FastCheck.Arbitrary<infer T> ? T : never

const wave = FastCheck.record({
  deliveries: FastCheck.array(delivery, { minLength: 1, maxLength: 5 }),
  /** The consumer's copies go through `receiveBatch` rather than one `receive` each. */
  batched: FastCheck.boolean()
})

const schedule = FastCheck.record({
  amounts: FastCheck.array(FastCheck.integer({ min: -2, max: 9 }), { minLength: 1, maxLength: 4 }),
  waves: FastCheck.array(wave, { minLength: 1, maxLength: 4 })
})

type Answer =
  | { readonly _tag: "Outcome"; readonly key: string; readonly result: unknown }
  | { readonly _tag: "Retryable"; readonly key: string }
  | { readonly _tag: "Crashed"; readonly key: string }

const options = { success: Applied, failure: AmountInvalid }

describe("Inbox redelivery", () => {
  layer(TestLive, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.effect.prop(
      "applies each distinct message once whatever the schedule of copies and crashes",
      [schedule],
      ([{ amounts, waves }]) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const here = yield* Effect.context<SqlClient.SqlClient>()
          const there = yield* OtherPool
          const inboxHere = yield* makeInbox(inboxOptions, injected)
          const inboxThere = yield* makeInbox(inboxOptions, injected).pipe(Effect.provide(there))
          const scope = `prop:${Crypto.randomUUID()}`
          const keyOf = (i: number) => `m${i % amounts.length}`
          const amountOf = (i: number) => amounts[i % amounts.length]!
          const answers: Array<Answer> = []

          const handler = (i: number, fault: Fault) => {
            const write = apply(scope, keyOf(i), amountOf(i))
            return fault === "handlerFails" ? Effect.zipRight(write, new Flaky()) : write
          }
          const receive = (inbox: InboxShape, i: number, fault: Fault, mode: "wait" | "fail") =>
            inbox.receive(
              { scope, key: keyOf(i), payload: { amount: amountOf(i), note: "same" } },
              handler(i, fault),
              { ...options, concurrent: mode, waitFor: Duration.seconds(2) }
            ).pipe(Effect.locally(planned, fault))

          const record = (key: string, exit: Exit.Exit<{ readonly result: unknown }, unknown>) => {
            if (Exit.isSuccess(exit)) return answers.push({ _tag: "Outcome", key, result: exit.value.result })
            const failure = Cause.failureOption(exit.cause)
            if (
              Option.isSome(failure) &&
              (failure.value instanceof InboxUnavailable || failure.value instanceof MessageInProgress ||
                failure.value instanceof Flaky)
            ) {
              return answers.push({ _tag: "Retryable", key })
            }
            if ([...Cause.defects(exit.cause)].some((d) => d instanceof SimulatedCrash)) {
              return answers.push({ _tag: "Crashed", key })
            }
            throw new Error(`unexpected answer for ${key}: ${Cause.pretty(exit.cause)}`)
          }

          for (const { batched, deliveries } of waves) {
            const standalone = deliveries.filter((d) => !d.consumer)
            const consumed = deliveries.filter((d) => d.consumer)
            const runStandalone = standalone.map((d) =>
              Effect.flatMap(
                Effect.exit(
                  d.other
                    ? receive(inboxThere, d.message, d.fault, d.mode).pipe(Effect.provide(there))
                    : receive(inboxHere, d.message, d.fault, d.mode).pipe(Effect.provide(here))
                ),
                (exit) => Effect.sync(() => record(keyOf(d.message), exit))
              )
            )
            // A consumer takes its copies as one batch: one transaction, a savepoint per message.
            const consumerFault = (d: Delivery) => d.fault === "handlerFails" ? d.fault : "none"
            const runConsumer = Effect.flatMap(
              Effect.exit(sql.withTransaction(
                batched
                  ? inboxHere.receiveBatch(
                    consumed.map((d) => ({
                      message: { scope, key: keyOf(d.message), payload: { amount: amountOf(d.message), note: "same" } },
                      handler: handler(d.message, consumerFault(d))
                    })),
                    options
                  )
                  : Effect.forEach(
                    consumed,
                    (d) => Effect.exit(receive(inboxHere, d.message, consumerFault(d), "fail"))
                  )
              )),
              (batch) =>
                Effect.sync(() => {
                  if (Exit.isFailure(batch)) {
                    // Its connection was cut under it (a crash of a copy on the same pool): the batch
                    // committed nothing and answered nothing, like a consumer that died; the
                    // sender's redeliveries below still must find each message applied once.
                    if (isTransient(Cause.squash(batch.cause))) return
                    throw new Error(Cause.pretty(batch.cause))
                  }
                  batch.value.forEach((exit, i) => record(keyOf(consumed[i]!.message), exit))
                })
            )
            yield* Effect.all([...runStandalone, runConsumer], { concurrency: "unbounded", discard: true })
          }

          // The sender redelivers each message until it gets an answer.
          const finals = new Map<string, unknown>()
          for (let i = 0; i < amounts.length; i++) {
            const final = yield* receive(inboxHere, i, "none", "wait").pipe(
              Effect.retry({
                times: 20,
                while: (e) => e instanceof InboxUnavailable || e instanceof MessageInProgress
              })
            )
            finals.set(keyOf(i), final.result)
          }

          const effects = yield* sql<{ key: string; n: number; total: number }>`
            SELECT key, count(*)::int AS n, sum(amount)::int AS total FROM ledger WHERE scope = ${scope} GROUP BY key
          `
          const claims = yield* sql<{ n: number }>`
            SELECT count(*)::int AS n FROM inbox_messages WHERE scope = ${scope} AND status = 'claimed'
          `
          for (let i = 0; i < amounts.length; i++) {
            const key = keyOf(i)
            const applied = effects.find((e) => e.key === key)
            if (amounts[i]! >= 0) {
              expect(applied?.n).toBe(1)
              expect(applied?.total).toBe(amounts[i])
              expect(Either.isRight(finals.get(key) as Either.Either<unknown, unknown>)).toBe(true)
            } else {
              expect(applied).toBeUndefined()
              expect(Either.isLeft(finals.get(key) as Either.Either<unknown, unknown>)).toBe(true)
            }
          }
          for (const answer of answers) {
            if (answer._tag === "Outcome") expect(answer.result).toEqual(finals.get(answer.key))
          }
          expect(claims[0]!.n).toBe(0)
        }),
      { timeout: 120_000, fastCheck: { numRuns: 20 } }
    )
  })
})
