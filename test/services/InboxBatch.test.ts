import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Cause, Data, Deferred, Duration, Effect, Either, Exit, FastCheck, Fiber, Layer, Option } from "effect"
import * as Crypto from "node:crypto"
import { fingerprint } from "../../src/domain/Fingerprint.js"
import { Inbox, type InboxShape, MessageInProgress } from "../../src/services/Inbox.js"
import { TestDatabaseLive } from "../support/Database.js"
import { AmountInvalid, Applied, apply, createLedger, effectsOf } from "../support/Inbox.js"

const TestLive = Layer.effectDiscard(createLedger).pipe(
  Layer.provideMerge(Inbox.layerWith({ claimLease: Duration.seconds(30), waitFor: Duration.seconds(5) })),
  Layer.provideMerge(TestDatabaseLive)
)

const freshScope = () => `batch:${Crypto.randomUUID()}`
const options = { success: Applied, failure: AmountInvalid }

class Flaky extends Data.TaggedError("Flaky")<{}> {}

/** How one copy in a batch behaves: its payload, and whether its handler fails after writing. */
const variants = ["same", "conflict", "flaky", "sqlFails"] as const
type Variant = typeof variants[number]
const failing = (variant: Variant) => variant === "flaky" || variant === "sqlFails"

const item = FastCheck.record({
  message: FastCheck.nat(5),
  variant: FastCheck.oneof(
    { weight: 4, arbitrary: FastCheck.constant<Variant>("same") },
    { weight: 3, arbitrary: FastCheck.constantFrom(...variants) }
  )
})

const batchCase = FastCheck.record({
  amounts: FastCheck.array(FastCheck.integer({ min: -2, max: 9 }), { minLength: 1, maxLength: 6 }),
  processedBefore: FastCheck.array(FastCheck.boolean(), { minLength: 6, maxLength: 6 }),
  batch: FastCheck.array(item, { minLength: 1, maxLength: 12 })
})

type Item = typeof item extends FastCheck.Arbitrary<infer T> ? T : never

/** What an answer says, without the ledger row ids that differ between scopes. */
const answerOf = (
  exit: Exit.Exit<{ readonly replayed: boolean; readonly result: Either.Either<unknown, unknown> }, unknown>
) => {
  if (Exit.isSuccess(exit)) {
    const { replayed, result } = exit.value
    return Either.isRight(result)
      ? `${replayed ? "replay" : "first"} ok ${(result.right as typeof Applied.Type).amount}`
      : `${replayed ? "replay" : "first"} rejected ${(result.left as AmountInvalid).amount}`
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) return `failed ${(failure.value as { _tag?: string })._tag}`
  return Cause.isDie(exit.cause) ? "defect" : `unexpected ${Cause.pretty(exit.cause)}`
}

describe("Inbox batches", () => {
  layer(TestLive, { timeout: 120_000, excludeTestServices: true })((it) => {
    /**
     * Runs `items` in `scope` after processing the messages of `processedBefore` one at a time,
     * either as one batch or one message after another in one transaction (the reference), and
     * answers what each item got and what the scope holds afterwards.
     */
    const run = (
      inbox: InboxShape,
      scope: string,
      amounts: ReadonlyArray<number>,
      processedBefore: ReadonlyArray<boolean>,
      items: ReadonlyArray<Item>,
      mode: "batch" | "oneByOne"
    ) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const keyOf = (i: number) => `m${i % amounts.length}`
        const amountOf = (i: number) => amounts[i % amounts.length]!
        const messageOf = (i: number, variant: Variant) => ({
          scope,
          key: keyOf(i),
          payload: { amount: amountOf(i), note: variant === "conflict" ? "other" : "same" }
        })
        const handlerOf = (i: number, variant: Variant) => {
          const write = apply(scope, keyOf(i), variant === "conflict" ? amountOf(i) + 100 : amountOf(i))
          switch (variant) {
            case "flaky":
              return Effect.zipRight(write, new Flaky())
            case "sqlFails":
              return Effect.zipRight(write, Effect.as(sql`SELECT 1 / 0`, { entry: 0, amount: 0 }))
            default:
              return write
          }
        }

        for (let i = 0; i < amounts.length; i++) {
          if (processedBefore[i]) {
            yield* Effect.either(inbox.receive(messageOf(i, "same"), handlerOf(i, "same"), options))
          }
        }
        const exits = yield* sql.withTransaction(
          mode === "batch"
            ? inbox.receiveBatch(
              items.map((d) => ({
                message: messageOf(d.message, d.variant),
                handler: handlerOf(d.message, d.variant)
              })),
              options
            )
            : Effect.forEach(items, (d) =>
              Effect.exit(
                inbox.receive(messageOf(d.message, d.variant), handlerOf(d.message, d.variant), {
                  ...options,
                  concurrent: "fail"
                })
              ))
        )

        const records = yield* sql<{ key: string; status: string; fingerprint: string; outcome: unknown }>`
          SELECT key, status, fingerprint, outcome->'v' AS outcome FROM inbox_messages WHERE scope = ${scope} ORDER BY key
        `
        const ledger = yield* sql<{ key: string; n: number; total: number }>`
          SELECT key, count(*)::int AS n, sum(amount)::int AS total FROM ledger WHERE scope = ${scope} GROUP BY key ORDER BY key
        `
        return {
          exits,
          answers: exits.map(answerOf),
          records: records.map((r) => ({
            key: r.key,
            status: r.status,
            fingerprint: r.fingerprint,
            amount: (r.outcome as { amount?: number } | null)?.amount
          })),
          ledger: ledger.map((l) => ({ ...l }))
        }
      })

    it.effect.prop(
      "gives any batch of new messages, replays, conflicts and failing handlers the outcomes of one message at a time",
      [batchCase],
      ([{ amounts, processedBefore, batch }]) =>
        Effect.gen(function*() {
          const inbox = yield* Inbox
          const keyOf = (i: number) => `m${i % amounts.length}`

          const batched = yield* run(inbox, freshScope(), amounts, processedBefore, batch, "batch")
          const reference = yield* run(inbox, freshScope(), amounts, processedBefore, batch, "oneByOne")
          const kept = batch.filter((d) => !failing(d.variant))
          const withoutFailures = yield* run(inbox, freshScope(), amounts, processedBefore, kept, "batch")

          // The same answers and the same final state as one message at a time.
          expect(batched.answers).toEqual(reference.answers)
          expect(batched.records).toEqual(reference.records)
          expect(batched.ledger).toEqual(reference.ledger)

          // Each distinct message had at most one effect, and exactly one when its record says it succeeded.
          for (const record of batched.records) {
            const effects = batched.ledger.find((l) => l.key === record.key)
            expect(record.status).not.toBe("claimed")
            if (record.status === "succeeded") expect(effects).toEqual({ key: record.key, n: 1, total: record.amount })
            else expect(effects).toBeUndefined()
          }
          for (const effects of batched.ledger) expect(effects.n).toBe(1)

          // Every answer for a key that carries an outcome carries the stored one, ledger row included.
          const outcomes = new Map<string, unknown>()
          batched.exits.forEach((exit, n) => {
            if (Exit.isFailure(exit)) return
            const key = keyOf(batch[n]!.message)
            if (!outcomes.has(key)) outcomes.set(key, exit.value.result)
            expect(exit.value.result).toEqual(outcomes.get(key))
          })

          // A failing handler changes nothing for the messages of other keys.
          const spoiled = new Set(batch.filter((d) => failing(d.variant)).map((d) => keyOf(d.message)))
          const clean = (key: string) => !spoiled.has(key)
          expect(batch.flatMap((d, n) => clean(keyOf(d.message)) ? [batched.answers[n]] : [])).toEqual(
            kept.flatMap((d, n) => clean(keyOf(d.message)) ? [withoutFailures.answers[n]] : [])
          )
          expect(batched.records.filter((r) => clean(r.key))).toEqual(
            withoutFailures.records.filter((r) => clean(r.key))
          )
          expect(batched.ledger.filter((l) => clean(l.key))).toEqual(withoutFailures.ledger.filter((l) => clean(l.key)))
        }),
      { timeout: 120_000, fastCheck: { numRuns: 40 } }
    )

    it.effect("answers a key another transaction is processing with MessageInProgress and runs the others", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const inbox = yield* Inbox
        const scope = freshScope()
        const started = yield* Deferred.make<void>()
        const resume = yield* Deferred.make<void>()
        const held = { scope, key: "held", payload: { amount: 1 } }
        // Waits before writing: the ledger total's row lock would otherwise hold the batch up.
        const slow = Effect.zipRight(
          Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(resume)),
          apply(scope, "held", 1)
        )

        const holder = yield* Effect.fork(inbox.receive(held, slow, options))
        yield* Deferred.await(started)
        const exits = yield* sql.withTransaction(inbox.receiveBatch([
          { message: { scope, key: "a", payload: { amount: 2 } }, handler: apply(scope, "a", 2) },
          { message: held, handler: apply(scope, "held", 1) },
          { message: { scope, key: "b", payload: { amount: 3 } }, handler: apply(scope, "b", 3) }
        ], options))
        yield* Deferred.succeed(resume, undefined)
        const first = yield* Fiber.join(holder)

        expect(exits.map(answerOf)).toEqual(["first ok 2", "failed MessageInProgress", "first ok 3"])
        expect(Exit.isFailure(exits[1]!) && Cause.failureOption(exits[1].cause)).toEqual(
          Option.some(new MessageInProgress({ key: "held" }))
        )
        expect(first.replayed).toBe(false)
        expect(yield* effectsOf(scope)).toEqual({ a: 1, b: 1, held: 1 })
      }))

    it.effect("takes over a claim whose holder's lease ran out and runs the message once", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const inbox = yield* Inbox
        const scope = freshScope()
        const payload = { amount: 4 }
        yield* sql`
          INSERT INTO inbox_messages (scope, key, fingerprint, status, claim_token, lease_until)
          VALUES (${scope}, 'orphan', ${
          fingerprint(payload)
        }, 'claimed', gen_random_uuid(), now() - interval '1 second')
        `

        const exits = yield* sql.withTransaction(inbox.receiveBatch([
          { message: { scope, key: "orphan", payload }, handler: apply(scope, "orphan", 4) },
          { message: { scope, key: "fresh", payload }, handler: apply(scope, "fresh", 4) }
        ], options))
        const record = yield* inbox.lookup(scope, "orphan")

        expect(exits.map(answerOf)).toEqual(["first ok 4", "first ok 4"])
        expect(Option.map(record, (r) => [r.status, r.attempts])).toEqual(Option.some(["succeeded", 2]))
        expect(yield* effectsOf(scope)).toEqual({ orphan: 1, fresh: 1 })
      }))

    it.effect("runs the handlers together, and each again in its own savepoint when one of them fails", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const inbox = yield* Inbox
        const scope = freshScope()
        const runs = { a: 0, b: 0, c: 0 }
        const counted = <E, R>(key: "a" | "b" | "c", handler: Effect.Effect<typeof Applied.Type, E, R>) =>
          Effect.zipRight(Effect.sync(() => runs[key]++), handler)
        const batch = (failing: boolean) =>
          sql.withTransaction(inbox.receiveBatch([
            { message: { scope, key: "a", payload: { amount: 1 } }, handler: counted("a", apply(scope, "a", 1)) },
            {
              message: { scope, key: "b", payload: { amount: 2 } },
              handler: counted("b", failing ? Effect.zipRight(apply(scope, "b", 2), new Flaky()) : apply(scope, "b", 2))
            },
            { message: { scope, key: "c", payload: { amount: 3 } }, handler: counted("c", apply(scope, "c", 3)) }
          ], options))

        const first = yield* batch(true)
        const firstRuns = { ...runs }
        const second = yield* batch(false)

        expect(first.map(answerOf)).toEqual(["first ok 1", "failed Flaky", "first ok 3"])
        expect(firstRuns).toEqual({ a: 2, b: 2, c: 1 })
        expect(second.map(answerOf)).toEqual(["replay ok 1", "first ok 2", "replay ok 3"])
        expect(runs).toEqual({ a: 2, b: 3, c: 1 })
        expect(yield* effectsOf(scope)).toEqual({ a: 1, b: 1, c: 1 })
      }))

    it.effect("runs a handler again in its savepoint after a transient database failure of its own", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const inbox = yield* Inbox
        const scope = freshScope()
        let runs = 0
        // Fails in the batch's optimistic run and in the first run of its own, then succeeds.
        const deadlockTwice = Effect.zipRight(
          apply(scope, "d", 5),
          Effect.suspend(() =>
            runs++ < 2
              ? Effect.asVoid(sql`DO $$ BEGIN RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01'; END $$`)
              : Effect.void
          )
        ).pipe(Effect.as({ entry: 0, amount: 5 }))

        const exits = yield* sql.withTransaction(inbox.receiveBatch([
          { message: { scope, key: "d", payload: { amount: 5 } }, handler: deadlockTwice },
          { message: { scope, key: "e", payload: { amount: 6 } }, handler: apply(scope, "e", 6) }
        ], options))

        expect(runs).toBe(3)
        expect(exits.map(answerOf)).toEqual(["first ok 5", "first ok 6"])
        expect(yield* effectsOf(scope)).toEqual({ d: 1, e: 1 })
      }))

    it.effect("refuses to run a batch outside a transaction", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()

        const exit = yield* Effect.exit(
          inbox.receiveBatch([{ message: { scope, key: "x", payload: {} }, handler: apply(scope, "x", 1) }], options)
        )

        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
        expect(yield* effectsOf(scope)).toEqual({})
      }))
  })
})
