/**
 * The service as the bench runs it: a child process with the product's whole layer (HTTP API,
 * migrations, background loops) on the database named by DATABASE_URL, plus what only the bench
 * needs: a minimal endpoint that does one INSERT through the same server, middleware and pool
 * (`POST /bench/insert`), and commands over IPC that run scenarios inside this process so that its
 * memory is the service's.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Effect, Layer, ManagedRuntime } from "effect"
import { AppLive } from "../src/layers/App.js"
import { AppConfig } from "../src/layers/Config.js"
import { DatabaseLive } from "../src/layers/Database.js"
import { Secrets } from "../src/layers/Secrets.js"
import { commands } from "./commands.js"

/** Reads the JSON body, like a real endpoint, and writes one row. */
const BenchRoutes = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* router.post(
      "/bench/insert",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const body = yield* request.json
        const key = request.headers["idempotency-key"] ?? null
        const rows = yield* sql<{ id: number }>`
          INSERT INTO bench_insert (key, size) VALUES (${key}, ${JSON.stringify(body).length}) RETURNING id
        `
        return HttpServerResponse.unsafeJson({ id: rows[0]!.id }, { status: 201 })
      }).pipe(Effect.orDie)
    )
  })
)

// The same DatabaseLive value as AppLive's: layers are shared by reference within one build, so
// the bench route and the product use one pool. Built first, so the route is registered before
// the server takes its routes.
const BenchLive = BenchRoutes.pipe(
  Layer.provideMerge(DatabaseLive),
  Layer.provideMerge(Secrets.layer),
  Layer.provideMerge(AppConfig.layer)
)

const runtime = ManagedRuntime.make(AppLive.pipe(Layer.provideMerge(BenchLive)))

const main = async () => {
  await runtime.runtime()
  process.on("message", async (message: any) => {
    const run = commands[message.command as string]
    try {
      if (run === undefined) throw new Error(`unknown bench command ${message.command}`)
      const result = await runtime.runPromise(run(message.args))
      process.send!({ id: message.id, result })
    } catch (error) {
      process.send!({ id: message.id, error: error instanceof Error ? error.stack ?? error.message : String(error) })
    }
  })
  const stop = () => {
    runtime.dispose().then(() => process.exit(0), () => process.exit(1))
  }
  process.once("SIGTERM", stop)
  process.once("SIGINT", stop)
  process.send!({ type: "ready" })
}

main().catch((error) => {
  process.stderr.write(`bench service failed to start: ${error instanceof Error ? error.stack : error}\n`)
  process.exit(1)
})
