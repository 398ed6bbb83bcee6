import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { Outbox } from "../../src/services/Outbox.js"
import { Queue } from "../../src/services/Queue.js"
import { TestDatabase, TestDatabaseLive } from "./Database.js"
import { eventually } from "./Eventually.js"

const childEntry = Path.join(import.meta.dirname, "queueChild.ts")

/**
 * A migrated database for queue crash tests: the table the child's `crash` consumer writes, its
 * subscription to `crash.in`, and a queue `crash-events` subscribed to the events it publishes
 * (`crash.out`), which no process consumes, so that each event delivered by a relay stays as one
 * job to count. With the outbox and the queue for the test itself.
 */
export const QueueCrashLive = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const queue = yield* Queue
  yield* sql`CREATE TABLE crash_effects (message_id text NOT NULL, worker text NOT NULL, attempt int NOT NULL)`
  yield* queue.subscribe("crash.in", "crash")
  yield* queue.subscribe("crash.out", "crash-events")
})).pipe(
  Layer.provideMerge(Layer.mergeAll(Queue.layer, Outbox.layer)),
  Layer.provideMerge(TestDatabaseLive)
)

export interface QueueChild {
  readonly pid: number
  /** The name the child records with its effects. */
  readonly worker: string
  /** Lines printed so far (progress lines and JSON logs, stderr included). */
  readonly lines: ReadonlyArray<string>
  /** Waits until a printed line satisfies `match`; fails if the child exits first. */
  readonly printed: (match: (line: string) => boolean) => Effect.Effect<string, Error>
  /** Waits until the child logged `message` (a JSON log line). */
  readonly logged: (message: string) => Effect.Effect<Record<string, unknown>, Error>
  readonly signal: (signal: NodeJS.Signals) => void
  /** Resolves with the exit code, or the signal's name, once the child has ended. */
  readonly exited: Effect.Effect<number | string>
  /** SIGKILLs the child (if alive) and waits for its end. */
  readonly kill: Effect.Effect<void>
}

const logMessage = (line: string): Record<string, unknown> | undefined => {
  if (!line.startsWith("{")) return undefined
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}

/**
 * Starts the queue child (`queueChild.ts`) on the test database as `worker`, with short leases
 * and polls unless `env` says otherwise, and waits until it is ready. The scope SIGKILLs it if it
 * is still running.
 */
export const spawnQueueChild = (worker: string, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.flatMap(TestDatabase, (db) =>
      Effect.sync((): QueueChild => {
        // One process, no wrapper: the pid that gets the signal is the one holding the leases.
        const child = ChildProcess.spawn(process.execPath, ["--import", "tsx", childEntry], {
          env: {
            ...process.env,
            DATABASE_URL: db.url,
            WORKER: worker,
            LOG_FORMAT: "json",
            LOG_LEVEL: "info",
            DB_POOL_SIZE: "6",
            QUEUE_CONCURRENCY: "2",
            QUEUE_LEASE_MS: "1500",
            QUEUE_POLL_INTERVAL_MS: "100",
            ...env
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
        const lines: Array<string> = []
        const waiters = new Set<() => void>()
        const wake = () => waiters.forEach((w) => w())
        Readline.createInterface({ input: child.stdout! }).on("line", (line) => {
          lines.push(line)
          wake()
        })
        Readline.createInterface({ input: child.stderr! }).on("line", (line) => {
          lines.push(line)
          wake()
        })
        const ended = new Promise<number | string>((done) =>
          child.once("exit", (code, signal) => {
            done(code ?? signal ?? "unknown")
            wake()
          })
        )
        const alive = () => child.exitCode === null && child.signalCode === null

        const printed = (match: (line: string) => boolean) =>
          Effect.async<string, Error>((resume) => {
            let seen = 0
            const check = () => {
              for (; seen < lines.length; seen++) {
                if (match(lines[seen])) {
                  waiters.delete(check)
                  return resume(Effect.succeed(lines[seen]))
                }
              }
              if (!alive()) {
                waiters.delete(check)
                resume(Effect.fail(new Error(`${worker} exited before the expected line:\n${lines.join("\n")}`)))
              }
            }
            waiters.add(check)
            check()
            return Effect.sync(() => waiters.delete(check))
          })
        const logged = (message: string) =>
          Effect.map(printed((line) => logMessage(line)?.message === message), (line) => logMessage(line)!)

        return {
          pid: child.pid!,
          worker,
          lines,
          printed,
          logged,
          signal: (signal) => child.kill(signal),
          exited: Effect.promise(() => ended),
          kill: Effect.promise(async () => {
            if (alive()) child.kill("SIGKILL")
            await ended
          })
        }
      })),
    (child) => child.kill
  ).pipe(Effect.tap((child) => child.printed((line) => line === "ready")))

/** Appends one `crash.in` event per message id in one transaction; the child's relay moves them on. */
export const appendCrashMessages = (messageIds: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* Outbox
    yield* sql.withTransaction(
      Effect.forEach(messageIds, (id, n) => outbox.append("crash.in", { n }, { messageId: id }), { discard: true })
    )
  })

/** Effects of `crash` messages per message id, with the workers and attempts that made them. */
export const crashEffects = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql<{ message_id: string; worker: string; attempt: number }>`
    SELECT message_id, worker, attempt FROM crash_effects ORDER BY message_id, worker
  `
)

/** How many `crash` effects committed so far. */
export const crashEffectCount = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM crash_effects`, (rows) => rows[0].n)
)

/** Events the consumer published, as the relays delivered them: one job of `crash-events` per delivery. */
export const deliveredEvents = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  sql<{ message_id: string; n: number }>`
    SELECT message_id, count(*)::int AS n FROM jobs WHERE queue = 'crash-events' GROUP BY message_id ORDER BY message_id
  `)

/** What is still claimed or pending anywhere in messaging: leased jobs, in-flight inbox claims, outbox rows. */
export const leftovers = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.map(
    sql<{ leased: number; crash_jobs: number; inbox_claims: number; outbox: number; dead: number }>`
      SELECT
        (SELECT count(*) FROM jobs WHERE leased_until IS NOT NULL OR leased_by IS NOT NULL)::int AS leased,
        (SELECT count(*) FROM jobs WHERE queue = 'crash')::int AS crash_jobs,
        (SELECT count(*) FROM inbox_messages WHERE status = 'claimed')::int AS inbox_claims,
        (SELECT count(*) FROM outbox)::int AS outbox,
        (SELECT count(*) FROM dead_letters)::int AS dead
    `,
    (rows) => rows[0]
  ))

/** Waits, in real time, until `count` reaches `at least`; for progress only, never to assert a timing. */
export const progressed = <E, R>(count: Effect.Effect<number, E, R>, atLeast: number, attempts = 3000) =>
  eventually(Effect.map(count, (n) => n >= atLeast), attempts, 20)

/** The job of a `crash` message while it exists: who holds it, under which token, after how many attempts. */
export const crashJob = (messageId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ leased_by: string | null; leased: boolean; token: number; attempts: number }>`
        SELECT leased_by, leased_until IS NOT NULL AS leased, lease_token AS token, attempts
        FROM jobs WHERE queue = 'crash' AND message_id = ${messageId}
      `,
      (rows) => rows[0]
    ))

/** Whether `child` holds a lease: claims record the holder's pid. */
export const heldBy = (leasedBy: string | null, child: QueueChild) => leasedBy?.split("/")[1] === String(child.pid)

/** Where the event `messageId` is: rows still in the outbox plus deliveries to `crash-events`. */
export const eventCopies = (messageId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ pending: number; delivered: number }>`
        SELECT (SELECT count(*) FROM outbox WHERE message_id = ${messageId})::int AS pending,
          (SELECT count(*) FROM jobs WHERE queue = 'crash-events' AND message_id = ${messageId})::int AS delivered
      `,
      (rows) => rows[0]
    ))
