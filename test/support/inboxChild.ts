/**
 * A child process for crash tests: delivers messages through its own inbox and prints progress
 * lines, so the parent can SIGKILL it while it holds a claim or at a random moment.
 *
 * Environment: DATABASE_URL, SCOPE, KEYS (comma-separated), LEASE_MS, HOLD ("1": after the
 * handler's writes, print "holding <key>" and never finish).
 */
import { Duration, Effect, Layer, Redacted } from "effect"
import { pgClientLayer } from "../../src/layers/Database.js"
import { Inbox } from "../../src/services/Inbox.js"
import { AmountInvalid, Applied, apply } from "./Inbox.js"

const env = (name: string) => process.env[name] ?? ""
const scope = env("SCOPE")
const hold = env("HOLD") === "1"
const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

const program = Effect.gen(function*() {
  const inbox = yield* Inbox
  yield* say("ready")
  for (const key of env("KEYS").split(",")) {
    const handler = hold
      ? Effect.zipRight(apply(scope, key, 1), Effect.zipRight(say(`holding ${key}`), Effect.never))
      : apply(scope, key, 1)
    yield* inbox.process({ scope, key, payload: { key } }, handler, { success: Applied, failure: AmountInvalid })
    yield* say(`done ${key}`)
  }
})

const live = Inbox.layerWith({ claimLease: Duration.millis(Number(env("LEASE_MS"))) }).pipe(
  Layer.provideMerge(
    pgClientLayer({ url: Redacted.make(env("DATABASE_URL")), maxConnections: 4, connectTimeoutMs: 5000 }).pipe(
      Layer.orDie
    )
  )
)

Effect.runPromise(Effect.provide(program, live)).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
