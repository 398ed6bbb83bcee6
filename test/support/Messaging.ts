import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { AppConfig, type AppConfigShape } from "../../src/layers/Config.js"
import { MessagingServicesLive } from "../../src/layers/Messaging.js"
import { Health } from "../../src/services/Health.js"
import { Inbox } from "../../src/services/Inbox.js"
import type { WorkerOptions } from "../../src/services/Worker.js"
import { TestDatabaseLive } from "./Database.js"

/**
 * Messaging services (outbox, queue, consumer registry, dead letters, listener, inbox) on a fresh
 * migrated database, without the relay and workers: tests run rounds themselves. Use with
 * `it.layer(..., { excludeTestServices: true })`: the listener needs the real clock.
 */
export const MessagingTestLive = (overrides: Partial<AppConfigShape> = {}) =>
  MessagingServicesLive.pipe(
    Layer.provideMerge(Inbox.layerWith()),
    Layer.provideMerge(Health.layer),
    Layer.provideMerge(TestDatabaseLive),
    Layer.provideMerge(AppConfig.make({ queuePollIntervalMs: 100, ...overrides }))
  )

/** Worker options for tests: short lease, fast retries. */
export const testWorkerOptions = (overrides: Partial<WorkerOptions> = {}): WorkerOptions => ({
  concurrency: 1,
  batchSize: 16,
  leaseMs: 5_000,
  pollIntervalMs: 100,
  maxAttempts: 3,
  backoff: { baseMs: 1, maxMs: 5 },
  graceMs: 1_000,
  owner: "test-worker",
  ...overrides
})

/** A table for handlers' effects: one row per run that committed, never de-duplicated by itself. */
export const createEffectsTable = (table: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE IF NOT EXISTS ${sql(table)} (
      message_id text NOT NULL,
      worker text NOT NULL,
      at timestamptz NOT NULL DEFAULT clock_timestamp()
    )`)

/** Runs `effect` until `done` holds for its result, polling on the real clock. */
export const eventually = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  done: (a: A) => boolean,
  options: { readonly timeoutMs?: number; readonly intervalMs?: number } = {}
) =>
  Effect.gen(function*() {
    const deadline = Date.now() + (options.timeoutMs ?? 20_000)
    while (true) {
      const value = yield* effect
      if (done(value)) return value
      if (Date.now() > deadline) return yield* Effect.dieMessage(`condition not reached: ${JSON.stringify(value)}`)
      yield* Effect.sleep(options.intervalMs ?? 50)
    }
  })
