import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, layer } from "@effect/vitest"
import { Data, Deferred, Duration, Effect, Either, Exit, Fiber, Layer } from "effect"
import * as Crypto from "node:crypto"
import type { AppConfigShape } from "../../src/layers/Config.js"
import {
  IdempotencyKeyReused,
  Inbox,
  InboxRetentionTooShort,
  InboxUnavailable,
  make as makeInbox,
  MessageInProgress,
  validateRetention
} from "../../src/services/Inbox.js"
import { TestDatabaseLive } from "../support/Database.js"
import { AmountInvalid, Applied, apply, createLedger, effectsOf } from "../support/Inbox.js"

const TestLive = Layer.effectDiscard(createLedger).pipe(
  Layer.provideMerge(Inbox.layerWith({ claimLease: Duration.millis(300), waitFor: Duration.seconds(20) })),
  Layer.provideMerge(TestDatabaseLive)
)

const freshScope = () => `test:${Crypto.randomUUID()}`
const options = { success: Applied, failure: AmountInvalid }

class Flaky extends Data.TaggedError("Flaky")<{}> {}

describe("Inbox", () => {
  layer(TestLive, { timeout: 60_000, excludeTestServices: true })((it) => {
    it.effect("runs a message once and replays its outcome to every redelivery", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()
        const message = { scope, key: "m1", payload: { amount: 5 } }

        const first = yield* inbox.receive(message, apply(scope, "m1", 5), options)
        const second = yield* inbox.receive(message, apply(scope, "m1", 5), options)
        const third = yield* inbox.process(message, apply(scope, "m1", 5), options)

        expect(first.replayed).toBe(false)
        expect(second.replayed).toBe(true)
        expect(second.result).toEqual(first.result)
        expect(Either.getOrThrow(first.result)).toEqual(third)
        expect(yield* effectsOf(scope)).toEqual({ m1: 1 })
      }))

    it.effect("fails a reused key with another payload and leaves the first outcome untouched", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()
        const first = yield* inbox.process({ scope, key: "k", payload: { amount: 1 } }, apply(scope, "k", 1), options)

        const reused = yield* Effect.flip(
          inbox.process({ scope, key: "k", payload: { amount: 2 } }, apply(scope, "k", 2), options)
        )
        const again = yield* inbox.process({ scope, key: "k", payload: { amount: 1 } }, apply(scope, "k", 1), options)

        expect(reused).toBeInstanceOf(IdempotencyKeyReused)
        expect((reused as IdempotencyKeyReused).fingerprint).toMatch(/^[0-9a-f]{64}$/)
        expect(again).toEqual(first)
        expect(yield* effectsOf(scope)).toEqual({ k: 1 })
      }))

    it.effect("replays a payload whose keys are reordered and whose whitespace differs", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()
        const a = JSON.parse(`{"amount": 3, "meta": {"a": 1, "b": [1, 2.0]}}`)
        const b = JSON.parse(`{ "meta":{"b":[1e0,2],"a":1.0},"amount":3 }`)

        yield* inbox.process({ scope, key: "k", payload: a }, apply(scope, "k", 3), options)
        const replay = yield* inbox.receive({ scope, key: "k", payload: b }, apply(scope, "k", 3), options)

        expect(replay.replayed).toBe(true)
        expect(yield* effectsOf(scope)).toEqual({ k: 1 })
      }))

    it.effect("stores and replays a rejection, rolling back the handler's writes", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()
        const message = { scope, key: "bad", payload: { amount: -1 } }

        const first = yield* inbox.receive(message, apply(scope, "bad", -1), options)
        const second = yield* inbox.receive(message, apply(scope, "bad", -1), options)
        const failed = yield* Effect.flip(inbox.process(message, apply(scope, "bad", -1), options))

        expect(first.replayed).toBe(false)
        expect(Either.getLeft(first.result)._tag).toBe("Some")
        expect(second.replayed).toBe(true)
        expect(second.result).toEqual(first.result)
        expect(failed).toBeInstanceOf(AmountInvalid)
        expect(yield* effectsOf(scope)).toEqual({})
        expect((yield* inbox.lookup(scope, "bad")).pipe((o) => o._tag === "Some" && o.value.status)).toBe("rejected")
      }))

    it.effect("stores nothing for a failure that is not the message's fault, so the next delivery runs", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()
        const message = { scope, key: "f", payload: { amount: 4 } }
        const flaky = Effect.zipRight(apply(scope, "f", 4), Effect.fail(new Flaky()))

        const failed = yield* Effect.flip(inbox.process(message, flaky, options))
        const stored = yield* inbox.lookup(scope, "f")
        const retried = yield* inbox.receive(message, apply(scope, "f", 4), options)

        expect(failed).toBeInstanceOf(Flaky)
        expect(stored._tag).toBe("None")
        expect(retried.replayed).toBe(false)
        expect(yield* effectsOf(scope)).toEqual({ f: 1 })
      }))

    it.effect("runs one of 50 concurrent deliveries and gives every caller its outcome", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()
        const message = { scope, key: "hot", payload: { amount: 7 } }
        const slow = Effect.zipLeft(apply(scope, "hot", 7), Effect.sleep("100 millis"))

        const results = yield* Effect.all(
          Array.from({ length: 50 }, () => Effect.either(inbox.receive(message, slow, options))),
          { concurrency: "unbounded" }
        )

        const receipts = results.map((r) => Either.getOrThrow(r))
        expect(receipts.filter((r) => !r.replayed)).toHaveLength(1)
        expect(new Set(receipts.map((r) => JSON.stringify(r.result))).size).toBe(1)
        expect(yield* effectsOf(scope)).toEqual({ hot: 1 })
      }))

    it.effect("answers concurrent copies that choose not to wait with MessageInProgress, never a unique violation", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()
        const message = { scope, key: "hot", payload: { amount: 2 } }
        const slow = Effect.zipLeft(apply(scope, "hot", 2), Effect.sleep("100 millis"))

        const results = yield* Effect.all(
          Array.from(
            { length: 50 },
            () => Effect.either(inbox.receive(message, slow, { ...options, concurrent: "fail" }))
          ),
          { concurrency: "unbounded" }
        )

        const failures = results.filter(Either.isLeft).map((r) => r.left)
        expect(failures.every((e) => e instanceof MessageInProgress)).toBe(true)
        expect(results.filter((r) => Either.isRight(r) && !r.right.replayed)).toHaveLength(1)
        expect(yield* effectsOf(scope)).toEqual({ hot: 1 })
      }))

    it.effect("keeps a holder whose claim was taken over after its lease from storing anything", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const scope = freshScope()
        const message = { scope, key: "slow", payload: { amount: 1 } }
        const resume = yield* Deferred.make<void>()
        const paused = yield* makeInbox(
          {
            claimLease: Duration.millis(200),
            waitFor: Duration.seconds(20),
            retention: Duration.hours(1),
            retentionBatchSize: 10
          },
          {
            at: (point) =>
              point === "afterClaim"
                ? Effect.as(Deferred.await(resume), "continue" as const)
                : Effect.succeed("continue" as const)
          }
        )
        const inbox = yield* Inbox

        const holder = yield* Effect.fork(paused.receive(message, apply(scope, "slow", 1), options))
        yield* Effect.iterate(0, {
          while: (n) => n === 0,
          body: () =>
            Effect.map(
              sql<{ n: number }>`SELECT count(*)::int AS n FROM inbox_messages WHERE scope = ${scope}`,
              (r) => r[0]!.n
            )
        })
        const taker = yield* inbox.receive(message, apply(scope, "slow", 1), options)
        yield* Deferred.succeed(resume, undefined)
        const late = yield* holder.await

        expect(taker.replayed).toBe(false)
        expect(Exit.isSuccess(late) && late.value.replayed).toBe(true)
        expect(Exit.isSuccess(late) && late.value.result).toEqual(taker.result)
        expect(yield* effectsOf(scope)).toEqual({ slow: 1 })
      }))

    it.effect("settles a commit whose acknowledgement was lost by looking the key up", () =>
      Effect.gen(function*() {
        const scope = freshScope()
        const message = { scope, key: "c", payload: { amount: 1 } }
        const lossy = yield* makeInbox(
          {
            claimLease: Duration.millis(300),
            waitFor: Duration.seconds(20),
            retention: Duration.hours(1),
            retentionBatchSize: 10
          },
          {
            commit: (_, commit, terminate) =>
              commit.pipe(
                Effect.zipRight(terminate),
                Effect.zipRight(
                  Effect.fail(new SqlError({ cause: { code: "08006" }, message: "Connection terminated" }))
                )
              )
          }
        )
        const inbox = yield* Inbox

        const first = yield* lossy.receive(message, apply(scope, "c", 1), options)
        const again = yield* inbox.receive(message, apply(scope, "c", 1), options)

        expect(first.replayed).toBe(false)
        expect(again.replayed).toBe(true)
        expect(again.result).toEqual(first.result)
        expect(yield* effectsOf(scope)).toEqual({ c: 1 })
      }))

    it.effect("settles a commit that never reached the server as not done, and the next delivery runs", () =>
      Effect.gen(function*() {
        const scope = freshScope()
        const message = { scope, key: "c", payload: { amount: 1 } }
        const cut = yield* makeInbox(
          {
            claimLease: Duration.millis(300),
            waitFor: Duration.seconds(20),
            retention: Duration.hours(1),
            retentionBatchSize: 10
          },
          { commit: (_, commit, terminate) => Effect.zipRight(terminate, commit) }
        )
        const inbox = yield* Inbox

        const failed = yield* Effect.flip(cut.receive(message, apply(scope, "c", 1), options))
        const retried = yield* inbox.receive(message, apply(scope, "c", 1), options)

        expect(failed).toBeInstanceOf(InboxUnavailable)
        expect(retried.replayed).toBe(false)
        expect(yield* effectsOf(scope)).toEqual({ c: 1 })
      }))

    it.effect("processes many messages in a caller's transaction, each in a savepoint", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const inbox = yield* Inbox
        const scope = freshScope()
        const deliver = (key: string, amount: number) =>
          Effect.either(inbox.receive(
            { scope, key, payload: { amount } },
            amount === 0 ? Effect.zipRight(apply(scope, key, amount), new Flaky()) : apply(scope, key, amount),
            options
          ))

        const batch = yield* sql.withTransaction(
          Effect.all([deliver("a", 1), deliver("b", 0), deliver("c", -1), deliver("a", 1)])
        )
        const rolledBack = yield* Effect.either(
          sql.withTransaction(Effect.zipRight(deliver("d", 1), Effect.fail("abort")))
        )
        const after = yield* Effect.all([deliver("a", 1), deliver("b", 2), deliver("d", 1)])

        expect(batch.map((r) => Either.isRight(r) && r.right.replayed)).toEqual([false, false, false, true])
        expect(Either.isLeft(batch[1]!) && batch[1].left).toBeInstanceOf(Flaky)
        expect(Either.isLeft(rolledBack)).toBe(true)
        expect(after.map((r) => Either.isRight(r) && r.right.replayed)).toEqual([true, false, false])
        expect(yield* effectsOf(scope)).toEqual({ a: 1, b: 1, d: 1 })
      }))

    it.effect("never stores the payload, only its fingerprint", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const inbox = yield* Inbox
        const scope = freshScope()
        const secret = "vector-0.123456789"

        yield* inbox.process(
          { scope, key: "p", payload: { amount: 1, template: secret } },
          apply(scope, "p", 1),
          options
        )
        const [row] = yield* sql<
          { text: string }
        >`SELECT row_to_json(m)::text AS text FROM inbox_messages m WHERE scope = ${scope}`

        expect(row!.text).not.toContain(secret)
      }))

    it.effect("deletes records past the retention window in small batches and keeps recent ones and live claims", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const inbox = yield* Inbox
        const retention = yield* makeInbox({
          claimLease: Duration.seconds(30),
          waitFor: Duration.seconds(1),
          retention: Duration.hours(1),
          retentionBatchSize: 3
        })
        const scope = freshScope()
        const keys = Array.from({ length: 9 }, (_, i) => `r${i}`)
        yield* Effect.forEach(
          keys,
          (key) => inbox.process({ scope, key, payload: { key } }, apply(scope, key, 1), options)
        )
        yield* sql`
          INSERT INTO inbox_messages (scope, key, fingerprint, status, claim_token, lease_until, created_at)
          VALUES (${scope}, 'live', repeat('a', 64), 'claimed', gen_random_uuid(), now() + interval '1 hour',
                  now() - interval '2 hours'),
                 (${scope}, 'dead', repeat('a', 64), 'claimed', gen_random_uuid(), now() - interval '1 hour',
                  now() - interval '2 hours')
        `
        yield* sql`
          UPDATE inbox_messages SET created_at = now() - interval '61 minutes'
          WHERE scope = ${scope} AND key IN ('r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6')
        `

        const first = yield* retention.purgeExpired
        const second = yield* retention.purgeExpired

        const left = yield* sql<{ key: string }>`SELECT key FROM inbox_messages WHERE scope = ${scope} ORDER BY key`
        expect(first).toEqual({ deleted: 8, batches: 3 })
        expect(second).toEqual({ deleted: 0, batches: 1 })
        expect(left.map((r) => r.key)).toEqual(["live", "r7", "r8"])
      }))

    it.effect("refuses a retention window that does not cover the redelivery horizons", () =>
      Effect.gen(function*() {
        const base = { inboxRetentionHours: 1, inboxClaimLeaseMs: 30_000 } as AppConfigShape

        const fine = yield* Effect.either(validateRetention(base))
        const tooShort = yield* Effect.flip(validateRetention({ ...base, inboxClaimLeaseMs: 3_600_000 }))

        expect(Either.isRight(fine)).toBe(true)
        expect(tooShort).toBeInstanceOf(InboxRetentionTooShort)
        expect(tooShort.message).toContain("INBOX_CLAIM_LEASE_MS")
      }))

    it.effect("releases the claim of an interrupted delivery, so the next copy runs at once", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = freshScope()
        const message = { scope, key: "gone", payload: { amount: 1 } }
        const started = yield* Deferred.make<void>()
        const stuck = Effect.zipRight(
          apply(scope, "gone", 1),
          Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)
        )

        const fiber = yield* Effect.fork(inbox.receive(message, stuck, options))
        yield* Deferred.await(started)
        yield* Fiber.interrupt(fiber)
        const stored = yield* inbox.lookup(scope, "gone")
        const next = yield* inbox.receive(message, apply(scope, "gone", 1), { ...options, concurrent: "fail" })

        expect(stored._tag).toBe("None")
        expect(next.replayed).toBe(false)
        expect(yield* effectsOf(scope)).toEqual({ gone: 1 })
      }))
  })
})
