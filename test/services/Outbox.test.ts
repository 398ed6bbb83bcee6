import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { Destination } from "../../src/services/Destination.js"
import { Outbox } from "../../src/services/Outbox.js"
import { Queue } from "../../src/services/Queue.js"
import { Relay, type RelayOptions } from "../../src/services/Relay.js"
import { Workers } from "../../src/services/Worker.js"
import { drainQueue, effectCounts, registerTestConsumer } from "../support/Consumers.js"
import { createEffectsTable, MessagingTestLive, testWorkerOptions } from "../support/Messaging.js"

const relayOptions: RelayOptions = { batch: 10, maxAttempts: 3, backoff: { baseMs: 1, maxMs: 5 }, pollIntervalMs: 100 }

const queueRelay = (options: Partial<RelayOptions> = {}) =>
  Relay.make({ ...relayOptions, ...options }).pipe(Effect.provide(Destination.layerQueue))

/** The work queue as destination, except that rows whose payload says `poison` always fail. */
const PoisonRefusingDestination = Layer.effect(
  Destination,
  Effect.map(Queue, (queue) => ({
    deliver: (rows) => {
      const poisoned = rows.filter((row) => (JSON.parse(row.payload) as { poison?: boolean }).poison === true)
      const good = rows.filter((row) => !poisoned.includes(row))
      return Effect.as(
        queue.publish(good),
        poisoned.map((row) => ({ id: row.id, error: `destination refused message ${row.messageId}` }))
      )
    }
  }))
)

const jobsFor = (queue: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ message_id: string; payload: { n: number } }>`
      SELECT message_id, payload FROM jobs WHERE queue = ${queue} ORDER BY id
    `)

const outboxRows = (topic: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ id: number; attempts: number; last_error: string | null; due: boolean }>`
      SELECT id, attempts, last_error, next_attempt_at <= now() AS due FROM outbox WHERE topic = ${topic}
    `
  )

describe("outbox and relay", () => {
  layer(MessagingTestLive(), { excludeTestServices: true })((it) => {
    it.effect("leaves no outbox row and no job behind a rolled-back transaction", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const outbox = yield* Outbox
        const queue = yield* Queue

        const exit = yield* sql.withTransaction(Effect.gen(function*() {
          yield* outbox.append("rollback.in", { n: 1 })
          yield* queue.enqueue([{ queue: "rollback", topic: "rollback.in", payload: { n: 1 } }])
          return yield* Effect.fail("business rule failed")
        })).pipe(Effect.exit)

        expect(Exit.isFailure(exit)).toBe(true)
        expect(yield* outboxRows("rollback.in")).toEqual([])
        expect(yield* jobsFor("rollback")).toEqual([])
      }))

    it.effect("refuses an append outside a transaction", () =>
      Effect.gen(function*() {
        const outbox = yield* Outbox

        const exit = yield* Effect.exit(outbox.append("loose.in", { n: 1 }))

        expect(Exit.isFailure(exit) && Exit.causeOption(exit)._tag === "Some").toBe(true)
        expect(yield* outboxRows("loose.in")).toEqual([])
      }))

    it.effect("holds collected appends back until appendAll writes them in order, with the transaction", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const outbox = yield* Outbox
        const collectTwo = outbox.collect(Effect.gen(function*() {
          yield* outbox.append("held.in", { n: 1 }, { messageId: "held-1" })
          yield* outbox.append("held.in", { n: 2 }, { messageId: "held-2" })
          return "done"
        }))

        const [result, events, before] = yield* sql.withTransaction(Effect.gen(function*() {
          const [result, events] = yield* collectTwo
          const before = yield* outboxRows("held.in")
          yield* outbox.appendAll(events)
          return [result, events, before] as const
        }))
        const rolledBack = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
          const [, events] = yield* collectTwo
          yield* outbox.appendAll(events)
          return yield* Effect.fail("abort")
        })))

        expect(result).toBe("done")
        expect(events.map((e) => e.messageId)).toEqual(["held-1", "held-2"])
        expect(before).toEqual([])
        expect(Exit.isFailure(rolledBack)).toBe(true)
        const rows = yield* sql<{ message_id: string; payload: { n: number } }>`
          SELECT message_id, payload FROM outbox WHERE topic = 'held.in' ORDER BY id
        `
        expect(rows.map((r) => [r.message_id, r.payload.n])).toEqual([["held-1", 1], ["held-2", 2]])
        yield* sql`DELETE FROM outbox WHERE topic = 'held.in'`
      }))

    it.effect("delivers a row whose transaction commits after a later row's", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const outbox = yield* Outbox
        yield* (yield* Queue).subscribe("late.in", "late")
        const relay = yield* queueRelay()
        const appended = yield* Deferred.make<void>()
        const commit = yield* Deferred.make<void>()

        const slow = yield* sql.withTransaction(Effect.gen(function*() {
          yield* outbox.append("late.in", { n: 1 }, { messageId: "late-1" })
          yield* Deferred.succeed(appended, undefined)
          yield* Deferred.await(commit)
        })).pipe(Effect.fork)
        yield* Deferred.await(appended)
        yield* sql.withTransaction(outbox.append("late.in", { n: 2 }, { messageId: "late-2" }))
        const first = yield* relay.runOnce
        yield* Deferred.succeed(commit, undefined)
        yield* Fiber.join(slow)
        const second = yield* relay.runOnce

        expect(first.delivered).toBe(1)
        expect(second.delivered).toBe(1)
        expect((yield* jobsFor("late")).map((j) => j.message_id)).toEqual(["late-2", "late-1"])
        expect(yield* outboxRows("late.in")).toEqual([])
      }))

    it.effect("parks a poisoned row with its error while the 100 rows behind it are delivered on time", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const outbox = yield* Outbox
        yield* (yield* Queue).subscribe("poison.in", "poison")
        // A backoff of a minute: a relay that waited for the failing row would hold the others that long.
        const relay = yield* Relay.make({ ...relayOptions, backoff: { baseMs: 60_000, maxMs: 60_000 } }).pipe(
          Effect.provide(PoisonRefusingDestination)
        )
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* outbox.append("poison.in", { poison: true }, { messageId: "poison-bad" })
          for (let n = 0; n < 100; n++) yield* outbox.append("poison.in", { n }, { messageId: `poison-${n}` })
        }))

        const rounds: Array<number> = []
        while (true) {
          const round = yield* relay.runOnce
          if (round.claimed === 0) break
          rounds.push(round.delivered)
        }
        const waiting = yield* outboxRows("poison.in")
        // Its later attempts, once the database clock has passed each backoff, end in the dead letters.
        for (let attempt = 2; attempt <= relayOptions.maxAttempts; attempt++) {
          yield* sql`UPDATE outbox SET next_attempt_at = now() WHERE topic = 'poison.in'`
          yield* relay.runOnce
        }

        // Back-to-back rounds delivered every row behind it while it waited for its second attempt.
        expect(rounds).toEqual([9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 1])
        expect((yield* jobsFor("poison")).map((j) => j.payload.n).sort((a, b) => a - b)).toEqual(
          Array.from({ length: 100 }, (_, n) => n)
        )
        expect(waiting).toEqual([{
          id: waiting[0].id,
          attempts: 1,
          last_error: "destination refused message poison-bad",
          due: false
        }])
        expect(yield* outboxRows("poison.in")).toEqual([])
        const dead = yield* sql<{ message_id: string; attempts: number; last_error: string; source: string }>`
          SELECT message_id, attempts, last_error, source FROM dead_letters WHERE topic = 'poison.in'
        `
        expect(dead).toEqual([{
          message_id: "poison-bad",
          attempts: 3,
          last_error: "destination refused message poison-bad",
          source: "outbox"
        }])
      }))

    it.effect("gives a failed row its own next attempt time, counting the attempt", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const outbox = yield* Outbox
        const relay = yield* Relay.make({ ...relayOptions, backoff: { baseMs: 60_000, maxMs: 60_000 } }).pipe(
          Effect.provide(PoisonRefusingDestination)
        )
        yield* sql.withTransaction(outbox.append("later.in", { poison: true }))

        yield* relay.runOnce
        const again = yield* relay.runOnce

        const [row] = yield* outboxRows("later.in")
        expect(row).toMatchObject({ attempts: 1, due: false })
        expect(row.last_error).toContain("destination refused")
        expect(again.claimed).toBe(0)
        yield* sql`DELETE FROM outbox WHERE topic = 'later.in'`
      }))

    it.effect("lets several relays run at once without delivering a row twice", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const outbox = yield* Outbox
        yield* (yield* Queue).subscribe("many.in", "many")
        yield* sql.withTransaction(Effect.forEach(
          Array.from({ length: 600 }, (_, n) => n),
          (n) => outbox.append("many.in", { n }, { messageId: `many-${n}` }),
          { discard: true }
        ))
        const relays = yield* Effect.all([queueRelay(), queueRelay(), queueRelay()])

        yield* Effect.forEach(relays, (relay) =>
          Effect.gen(function*() {
            while ((yield* relay.runOnce).claimed > 0) {
              // keep going until this relay finds nothing due
            }
          }), { concurrency: "unbounded" })

        const jobs = yield* jobsFor("many")
        expect(jobs.length).toBe(600)
        expect(new Set(jobs.map((j) => j.message_id)).size).toBe(600)
      }))

    it.effect("fans a published event out to every subscribed consumer, which processes it", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const outbox = yield* Outbox
        yield* createEffectsTable("effects")
        yield* registerTestConsumer("flow")
        yield* (yield* Queue).subscribe("flow.in", "audit")
        const relay = yield* queueRelay({ batch: 50 })
        const workers = yield* Workers.make(testWorkerOptions({ batchSize: 50 }))
        yield* sql.withTransaction(Effect.forEach(
          Array.from({ length: 40 }, (_, n) => n),
          (n) => outbox.append("flow.in", { n, publish: true }, { messageId: `flow-${n}` }),
          { discard: true }
        ))

        yield* relay.runOnce
        yield* drainQueue(workers, "flow")
        yield* relay.runOnce

        const counts = yield* effectCounts("flow")
        expect(counts.size).toBe(40)
        expect([...counts.values()].every((n) => n === 1)).toBe(true)
        expect((yield* jobsFor("audit")).length).toBe(40)
        // The consumer's own events reached the outbox and, with no subscriber, left it.
        expect(yield* outboxRows("flow.out")).toEqual([])
      }))
  })
})
