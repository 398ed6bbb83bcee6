import { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer } from "effect"
import { migrations } from "../migrations/index.js"
import { Health } from "../services/Health.js"
import { Inbox, retentionLoop } from "../services/Inbox.js"
import { migrate } from "../services/Migrator.js"
import { supervised } from "../services/Supervisor.js"
import { AppConfig } from "./Config.js"
import { DatabaseLive } from "./Database.js"
import { HttpLive } from "./Http.js"
import { RetentionLive } from "./Identity.js"
import { LoggingLive } from "./Logging.js"
import { MessagingLive } from "./Messaging.js"
import { Prometheus } from "./Metrics.js"
import { Secrets } from "./Secrets.js"

/** Brings the schema up to date, then watches the database for the readiness report. */
const SchemaLive = Layer.scopedDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* migrate(migrations)
  yield* supervised(
    "database",
    Effect.gen(function*() {
      const health = yield* Health
      while (true) {
        yield* sql`SELECT 1`.pipe(
          Effect.timeout("3 seconds"),
          Effect.matchEffect({
            onFailure: (error) => health.set("database", "down", String(error)),
            onSuccess: () => health.set("database", "up")
          })
        )
        yield* Effect.sleep("5 seconds")
      }
    })
  )
}))

/** The inbox, and its retention loop deleting processed messages past the de-duplication window. */
const InboxLive = Layer.scopedDiscard(
  Effect.flatMap(
    AppConfig,
    (config) => supervised("inbox-retention", retentionLoop(Duration.millis(config.inboxRetentionIntervalMs)))
  )
).pipe(Layer.provideMerge(Inbox.layer))

/** Process-wide services that every component reports to. */
export const ObservabilityLive = Layer.mergeAll(Health.layer, Prometheus.layer)

/**
 * The whole service given a database (`SqlClient`), configuration and secrets: tests provide
 * their own database and secrets, the process provides `DatabaseLive`.
 */
export const ServerLive = Layer.mergeAll(HttpLive, RetentionLive).pipe(
  Layer.provideMerge(MessagingLive),
  Layer.provideMerge(InboxLive),
  Layer.provide(SchemaLive),
  Layer.provideMerge(ObservabilityLive)
)

/** The process: configuration from the environment, embedded or external database, logging. */
export const AppLive = ServerLive.pipe(
  Layer.provide(DatabaseLive),
  Layer.provide(Secrets.layer),
  Layer.provide(LoggingLive),
  Layer.provide(AppConfig.layer)
)

/** Bounds shutdown: if finalizers have not finished within the grace period, exit anyway. */
export const ShutdownGuardLive = Layer.scopedDiscard(Effect.gen(function*() {
  const config = yield* AppConfig
  yield* Effect.addFinalizer(() =>
    Effect.zipRight(
      Effect.logInfo("shutting down").pipe(Effect.annotateLogs({ component: "process" })),
      Effect.sync(() => {
        setTimeout(() => process.exit(1), config.shutdownGraceMs + 5_000).unref()
      })
    )
  )
})).pipe(Layer.provide(AppConfig.layer))
