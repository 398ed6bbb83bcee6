import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Logger } from "effect"
import { consumer, Consumers } from "../../src/services/Consumers.js"
import { Outbox } from "../../src/services/Outbox.js"
import { Queue } from "../../src/services/Queue.js"
import { Workers } from "../../src/services/Worker.js"
import { effectCounts, enqueueMany, registerTestConsumer, TestPayload } from "../support/Consumers.js"
import { createEffectsTable, MessagingTestLive, testWorkerOptions } from "../support/Messaging.js"

/** Moves every lease of `queue` into the past, as if the database clock had run past it. */
const expireLeases = (queue: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql`UPDATE jobs SET leased_until = now() - interval '1 second' WHERE queue = ${queue} AND leased_until IS NOT NULL`
  )

const jobsOf = (queue: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql<{ message_id: string; attempts: number; leased_until: Date | null; last_error: string | null }>`
      SELECT message_id, attempts, leased_until, last_error FROM jobs WHERE queue = ${queue} ORDER BY id
    `
  )

const deadLettersOf = (queue: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ message_id: string; last_error: string; attempts: number }>`
      SELECT message_id, last_error, attempts FROM dead_letters WHERE queue = ${queue} ORDER BY id
    `)

describe("work queue", () => {
  layer(MessagingTestLive(), { excludeTestServices: true })((it) => {
    it.effect("claims with a lease and a fencing token; a stale token can neither complete nor retry", () =>
      Effect.gen(function*() {
        yield* createEffectsTable("effects")
        const queue = yield* Queue
        yield* enqueueMany("fence", 1)

        const [first] = yield* queue.claim({ queues: ["fence"], limit: 10, leaseMs: 60_000, owner: "a" })
        const none = yield* queue.claim({ queues: ["fence"], limit: 10, leaseMs: 60_000, owner: "b" })
        yield* expireLeases("fence")
        yield* queue.reapExpired({ maxAttempts: 5, limit: 100 })
        const [second] = yield* queue.claim({ queues: ["fence"], limit: 10, leaseMs: 60_000, owner: "b" })
        const staleComplete = yield* queue.complete([first])
        const staleRetry = yield* queue.retry([{ lease: first, error: "stale", delayMs: 0 }])
        const staleExtend = yield* queue.extend([first], 60_000)
        const fresh = yield* queue.complete([second])

        expect(none).toEqual([])
        expect(second.token).toBeGreaterThan(first.token)
        expect(second.attempt).toBe(2)
        expect(staleComplete).toEqual([])
        expect(staleRetry).toEqual([])
        expect(staleExtend).toEqual([])
        expect(fresh).toEqual([second.id])
      }))

    it.effect("parks a job whose leases keep expiring, with the holder in the error", () =>
      Effect.gen(function*() {
        const queue = yield* Queue
        yield* enqueueMany("expiring", 1)

        for (let i = 0; i < 3; i++) {
          yield* queue.claim({ queues: ["expiring"], limit: 1, leaseMs: 60_000, owner: `holder-${i}` })
          yield* expireLeases("expiring")
          yield* queue.reapExpired({ maxAttempts: 3, limit: 100 })
        }

        expect(yield* jobsOf("expiring")).toEqual([])
        const [parked] = yield* deadLettersOf("expiring")
        expect(parked.attempts).toBe(3)
        expect(parked.last_error).toContain("holder-2")
      }))

    it.effect("completes a batch in one transaction where a failing message is retried alone", () =>
      Effect.gen(function*() {
        yield* registerTestConsumer("group")
        const workers = yield* Workers.make(testWorkerOptions({ batchSize: 50, maxAttempts: 10 }))
        yield* enqueueMany("group", 20, (n) => ({ n, behaviour: n === 7 ? "fail" : "ok" }))

        const summary = yield* workers.runOnce

        expect(summary).toEqual({ claimed: 20, completed: 19, retried: 1, parked: 0, lost: 0 })
        const counts = yield* effectCounts("group")
        expect(counts.size).toBe(19)
        expect([...counts.values()].every((n) => n === 1)).toBe(true)
        const [left] = yield* jobsOf("group")
        expect(left.message_id).toBe("group-7")
        expect(left.leased_until).toBeNull()
        expect(left.last_error).toContain("poisoned message 7")
        yield* (yield* SqlClient.SqlClient)`DELETE FROM jobs WHERE queue = 'group'`
      }))

    it.effect("writes the events of the messages that ran, in order, and none of a failed or replayed one", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const queue = yield* Queue
        const outbox = yield* Outbox
        yield* (yield* Consumers).register(consumer({
          name: "events",
          topics: ["events.in"],
          schema: TestPayload,
          // Appends first, then fails for message 2: its event must go with its other writes.
          handle: (payload, message) =>
            Effect.gen(function*() {
              yield* outbox.append("events.out", { n: payload.n }, { messageId: `out:${message.messageId}` })
              if (payload.behaviour === "fail") return yield* Effect.fail(new Error(`poisoned message ${payload.n}`))
            })
        }))
        const workers = yield* Workers.make(testWorkerOptions({ maxAttempts: 10 }))
        yield* enqueueMany("events", 5, (n) => ({ n, behaviour: n === 2 ? "fail" : "ok" }))

        const first = yield* workers.runOnce
        yield* sql`DELETE FROM jobs WHERE queue = 'events'`
        yield* queue.enqueue([{
          queue: "events",
          topic: "events.in",
          messageId: "events-1",
          payload: { n: 1, behaviour: "ok" }
        }])
        const redelivered = yield* workers.runOnce

        expect(first).toMatchObject({ completed: 4, retried: 1 })
        expect(redelivered).toMatchObject({ completed: 1 })
        const events = yield* sql<{ message_id: string; n: number }>`
          SELECT message_id, (payload->>'n')::int AS n FROM outbox WHERE topic = 'events.out' ORDER BY id
        `
        expect(events.map((e) => e.message_id)).toEqual([
          "out:events-0",
          "out:events-1",
          "out:events-3",
          "out:events-4"
        ])
      }))

    it.effect("parks a poisoned job with its error while the 100 jobs behind it complete on time", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* registerTestConsumer("poison")
        // A backoff of a minute: workers that waited for the failing job would hold the others that long.
        const workers = yield* Workers.make(
          testWorkerOptions({ batchSize: 8, maxAttempts: 3, backoff: { baseMs: 60_000, maxMs: 60_000 } })
        )
        yield* enqueueMany("poison", 101, (n) => ({ n, behaviour: n === 0 ? "fail" : "ok" }))

        const batches: Array<number> = []
        while (true) {
          const batch = yield* workers.runOnce
          if (batch.claimed === 0) break
          batches.push(batch.completed)
        }
        const completedWhileWaiting = (yield* effectCounts("poison")).size
        const waiting = yield* jobsOf("poison")
        // Its later attempts, once the database clock has passed each backoff, end in the dead letters.
        for (let attempt = 2; attempt <= 3; attempt++) {
          yield* sql`UPDATE jobs SET run_at = now() WHERE queue = 'poison'`
          yield* workers.runOnce
        }

        expect(batches).toEqual([7, ...Array.from({ length: 11 }, () => 8), 5])
        expect(completedWhileWaiting).toBe(100)
        expect(waiting).toEqual([
          { message_id: "poison-0", attempts: 1, leased_until: null, last_error: "Error: poisoned message 0" }
        ])
        expect(yield* jobsOf("poison")).toEqual([])
        const [parked] = yield* deadLettersOf("poison")
        expect(parked.message_id).toBe("poison-0")
        expect(parked.attempts).toBe(3)
        expect(parked.last_error).toContain("poisoned message 0")
        const counts = yield* effectCounts("poison")
        expect(counts.size).toBe(100)
        expect([...counts.values()].every((n) => n === 1)).toBe(true)
      }))

    it.effect("parks a rejected message at once with its reason", () =>
      Effect.gen(function*() {
        yield* registerTestConsumer("reject")
        const workers = yield* Workers.make(testWorkerOptions({ maxAttempts: 10 }))
        yield* enqueueMany("reject", 3, (n) => ({ n, behaviour: n === 1 ? "reject" : "ok" }))
        const queue = yield* Queue
        yield* queue.enqueue([{ queue: "reject", topic: "reject.in", messageId: "reject-bad", payload: { n: "x" } }])

        const summary = yield* workers.runOnce

        expect(summary).toMatchObject({ completed: 2, parked: 2, retried: 0 })
        const parked = yield* deadLettersOf("reject")
        expect(parked.map((p) => p.message_id).sort()).toEqual(["reject-1", "reject-bad"])
        expect(parked.every((p) => p.attempts === 1)).toBe(true)
        expect(parked.find((p) => p.message_id === "reject-bad")?.last_error).toContain("Expected number")
      }))

    it.effect("writes nothing for jobs whose lease was taken over: no effect, no event, no outcome", () =>
      Effect.gen(function*() {
        yield* registerTestConsumer("taken")
        const slow = yield* Workers.make(testWorkerOptions({ owner: "slow" }))
        const taker = yield* Workers.make(testWorkerOptions({ owner: "taker" }))
        yield* enqueueMany("taken", 5, (n) => ({ n, publish: true }))

        const stale = yield* slow.claim
        yield* expireLeases("taken")
        yield* (yield* Queue).reapExpired({ maxAttempts: 5, limit: 100 })
        const fresh = yield* taker.claim
        const late = yield* slow.process(stale)
        const onTime = yield* taker.process(fresh)

        expect(late).toMatchObject({ claimed: 5, completed: 0, lost: 5 })
        expect(onTime).toMatchObject({ claimed: 5, completed: 5, lost: 0 })
        const sql = yield* SqlClient.SqlClient
        const events = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox WHERE topic = 'taken.out'`
        expect(events[0].n).toBe(5)
        const counts = yield* effectCounts("taken")
        expect([...counts.values()]).toEqual([1, 1, 1, 1, 1])
      }))

    it.scoped("retries a statement that fails on the completion path and keeps working", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* registerTestConsumer("faulty")
        const workers = yield* Workers.make(testWorkerOptions())
        yield* enqueueMany("faulty", 10)
        yield* Effect.acquireRelease(
          sql`
            CREATE SEQUENCE completion_fault;
            CREATE FUNCTION completion_fault() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF nextval('completion_fault') = 1 THEN
                RAISE EXCEPTION 'injected completion fault' USING ERRCODE = '40001';
              END IF;
              RETURN NULL;
            END $$;
            CREATE TRIGGER completion_fault BEFORE DELETE ON jobs
              FOR EACH STATEMENT EXECUTE FUNCTION completion_fault();
          `.unprepared,
          () =>
            sql`DROP TRIGGER completion_fault ON jobs; DROP FUNCTION completion_fault(); DROP SEQUENCE completion_fault`
              .unprepared.pipe(Effect.orDie)
        )

        const summary = yield* workers.runOnce
        yield* Effect.flatMap(Queue, (queue) =>
          queue.enqueue(
            Array.from({ length: 5 }, (_, i) => ({
              queue: "faulty",
              topic: "faulty.in",
              messageId: `faulty-next-${i}`,
              payload: { n: i }
            }))
          ))
        const next = yield* workers.runOnce

        expect(summary).toMatchObject({ completed: 10, lost: 0 })
        const fired = yield* sql<{ last_value: number }>`SELECT last_value FROM completion_fault`
        expect(fired[0].last_value).toBeGreaterThanOrEqual(2)
        expect(next).toMatchObject({ claimed: 5, completed: 5, lost: 0 })
        const counts = yield* effectCounts("faulty")
        expect(counts.size).toBe(15)
        expect([...counts.values()].every((n) => n === 1)).toBe(true)
      }))

    it.scoped("retries a connection cut on the completion path", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* registerTestConsumer("cut")
        const workers = yield* Workers.make(testWorkerOptions())
        yield* enqueueMany("cut", 10)
        yield* Effect.acquireRelease(
          sql`
            CREATE SEQUENCE completion_cut;
            CREATE FUNCTION completion_cut() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF nextval('completion_cut') = 1 THEN
                PERFORM pg_terminate_backend(pg_backend_pid());
              END IF;
              RETURN NULL;
            END $$;
            CREATE TRIGGER completion_cut BEFORE DELETE ON jobs
              FOR EACH STATEMENT EXECUTE FUNCTION completion_cut();
          `.unprepared,
          () =>
            sql`DROP TRIGGER completion_cut ON jobs; DROP FUNCTION completion_cut(); DROP SEQUENCE completion_cut`
              .unprepared.pipe(Effect.orDie)
        )

        const summary = yield* workers.runOnce

        expect(summary).toMatchObject({ completed: 10, lost: 0 })
        const counts = yield* effectCounts("cut")
        expect(counts.size).toBe(10)
        expect([...counts.values()].every((n) => n === 1)).toBe(true)
      }))

    it.scoped("runs the whole batch again when its connection dies midway, and logs that rather than a retry per job", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* registerTestConsumer("midway")
        const workers = yield* Workers.make(testWorkerOptions())
        yield* enqueueMany("midway", 6)
        yield* Effect.acquireRelease(
          sql`
            CREATE SEQUENCE midway_cut;
            CREATE FUNCTION midway_cut() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.message_id LIKE 'midway-%' AND nextval('midway_cut') = 3 THEN
                PERFORM pg_terminate_backend(pg_backend_pid());
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER midway_cut BEFORE INSERT ON effects FOR EACH ROW EXECUTE FUNCTION midway_cut();
          `.unprepared,
          () =>
            sql`DROP TRIGGER midway_cut ON effects; DROP FUNCTION midway_cut(); DROP SEQUENCE midway_cut`
              .unprepared.pipe(Effect.orDie)
        )
        const logged: Array<string> = []
        const collect = Logger.add(Logger.make(({ message }) => {
          logged.push(String(Array.isArray(message) ? message[0] : message))
        }))

        const summary = yield* workers.runOnce.pipe(Effect.provide(collect))

        expect(summary).toMatchObject({ completed: 6, retried: 0, parked: 0 })
        expect(logged).toContain("batch failed on the database, running the whole batch again")
        expect(logged).not.toContain("job failed, retry scheduled")
        const counts = yield* effectCounts("midway")
        expect([...counts.values()]).toEqual([1, 1, 1, 1, 1, 1])
      }))

    it.scoped("retries a COMMIT that fails once", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* registerTestConsumer("commit")
        const workers = yield* Workers.make(testWorkerOptions())
        yield* enqueueMany("commit", 4)
        yield* Effect.acquireRelease(
          sql`
            CREATE SEQUENCE commit_fault;
            CREATE FUNCTION commit_fault() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.message_id LIKE 'commit-%' AND nextval('commit_fault') = 1 THEN
                RAISE EXCEPTION 'injected commit fault' USING ERRCODE = '40001';
              END IF;
              RETURN NULL;
            END $$;
            CREATE CONSTRAINT TRIGGER commit_fault AFTER INSERT ON effects
              DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION commit_fault();
          `.unprepared,
          () =>
            sql`DROP TRIGGER commit_fault ON effects; DROP FUNCTION commit_fault(); DROP SEQUENCE commit_fault`
              .unprepared.pipe(Effect.orDie)
        )

        const summary = yield* workers.runOnce

        expect(summary).toMatchObject({ completed: 4 })
        const counts = yield* effectCounts("commit")
        expect([...counts.values()]).toEqual([1, 1, 1, 1])
      }))

    it.effect("claims the head of a backlog without reading the rest of it, whatever the table's statistics", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const queue = yield* Queue
        // Rows of jobs read by this transaction so far (sequential and index scans, bitmaps included).
        const rowsRead = sql<{ n: number }>`
          SELECT (coalesce(sum(seq_tup_read), 0) + coalesce(sum(idx_tup_fetch), 0))::int AS n
          FROM pg_stat_xact_user_tables WHERE relname = 'jobs'
        `.pipe(Effect.map((rows) => rows[0]!.n))

        const { claimed, read } = yield* sql.withTransaction(Effect.gen(function*() {
          yield* enqueueMany("backlog", 3_000)
          const before = yield* rowsRead
          const claimed = yield* queue.claim({ queues: ["backlog"], limit: 10, leaseMs: 60_000, owner: "a" })
          return { claimed, read: (yield* rowsRead) - before }
        }))
        const ids = yield* sql<{ id: number }>`SELECT id FROM jobs WHERE queue = 'backlog' ORDER BY run_at, id LIMIT 10`

        expect(claimed.map((j) => j.id).sort((a, b) => a - b)).toEqual(ids.map((r) => r.id))
        expect(read).toBeLessThanOrEqual(40)
        yield* sql`DELETE FROM jobs WHERE queue = 'backlog'`
      }))

    it.effect("releases leases at once without counting the attempt", () =>
      Effect.gen(function*() {
        const queue = yield* Queue
        yield* enqueueMany("release", 3)

        const claimed = yield* queue.claim({ queues: ["release"], limit: 10, leaseMs: 600_000, owner: "a" })
        const released = yield* queue.release(claimed)
        const again = yield* queue.claim({ queues: ["release"], limit: 10, leaseMs: 600_000, owner: "b" })

        expect([...released].sort()).toEqual(claimed.map((j) => j.id).sort())
        expect(again.map((j) => j.attempt)).toEqual([1, 1, 1])
        yield* queue.complete(again)
      }))
  })
})
