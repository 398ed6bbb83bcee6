/**
 * A child process for crash tests of the work queue: the production messaging layers (relay,
 * workers, inbox, listener) configured from the environment like the service, and one consumer,
 * `crash` (topic `crash.in`), that records each message in `crash_effects` (message id, worker,
 * attempt) and appends `crash.out` with message id `out:<message id>` through the outbox. The test
 * creates the table and the subscriptions (see QueueCrash.ts).
 *
 * Environment: DATABASE_URL, WORKER (the name recorded with each effect), HOLD_MS (after its
 * writes the `crash` handler prints `handling <message id>` and waits this long inside the
 * transaction), plus any setting of the service (QUEUE_LEASE_MS, SHUTDOWN_GRACE_MS, ...).
 * Prints `ready` once its layers are built; logs are JSON lines on stdout.
 */
import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, Redacted, Schema } from "effect"
import { AppConfig } from "../../src/layers/Config.js"
import { pgClientLayer } from "../../src/layers/Database.js"
import { LoggingLive } from "../../src/layers/Logging.js"
import { MessagingRunnersLive, MessagingServicesLive } from "../../src/layers/Messaging.js"
import { consumer, Consumers } from "../../src/services/Consumers.js"
import { Health } from "../../src/services/Health.js"
import { Inbox } from "../../src/services/Inbox.js"
import { Outbox } from "../../src/services/Outbox.js"

const env = (name: string) => process.env[name] ?? ""
const worker = env("WORKER")
const holdMs = Number(env("HOLD_MS") || "0")
const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

const Payload = Schema.Struct({ n: Schema.Number })

const ConsumersLive = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const outbox = yield* Outbox
  const consumers = yield* Consumers

  yield* consumers.register(consumer({
    name: "crash",
    topics: ["crash.in"],
    schema: Payload,
    handle: (payload, message) =>
      Effect.gen(function*() {
        yield* sql`
          INSERT INTO crash_effects (message_id, worker, attempt) VALUES (${message.messageId}, ${worker}, ${message.attempt})
        `
        yield* outbox.append("crash.out", payload, { messageId: `out:${message.messageId}` })
        if (holdMs > 0) {
          yield* say(`handling ${message.messageId}`)
          yield* Effect.sleep(holdMs)
        }
      })
  }))
  yield* say("ready")
}))

const DatabaseLive = Layer.unwrapEffect(Effect.map(AppConfig, (config) =>
  pgClientLayer({
    url: Redacted.make(env("DATABASE_URL")),
    maxConnections: config.dbPoolSize,
    connectTimeoutMs: config.dbConnectTimeoutMs
  }).pipe(Layer.orDie)))

const ChildLive = ConsumersLive.pipe(
  Layer.provideMerge(MessagingRunnersLive),
  Layer.provideMerge(MessagingServicesLive),
  Layer.provideMerge(Inbox.layer),
  Layer.provideMerge(Health.layer),
  Layer.provideMerge(DatabaseLive),
  Layer.provide(LoggingLive),
  Layer.provideMerge(AppConfig.layer)
)

Layer.launch(ChildLive).pipe(NodeRuntime.runMain({ disablePrettyLogger: true }))
