import { SqlClient } from "@effect/sql"
import { Context, Duration, Effect, Exit, Fiber, Layer, Option, Redacted } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { embeddedServer, ensureDatabase, pgClientLayer } from "../layers/Database.js"
import { makeClient } from "./Client.js"
import { describeFault, plan, runPlan, type TimedFault } from "./Faults.js"
import {
  bundle,
  embeddedDatabaseUrl,
  freePort,
  ProcessFailed,
  projectRoot,
  removeBundles,
  ServiceInstance,
  spawnTs,
  stopEmbeddedPostmaster,
  tail,
  terminate,
  waitHttpOk
} from "./Processes.js"
import { Display } from "./Progress.js"
import { makeRng } from "./Random.js"
import { type Check, fail, failed, pass, renderReport, type RunSummary } from "./Report.js"
import { Stats } from "./Stats.js"
import type { Capabilities, Provider, RunOptions, Scenario, World } from "./World.js"

/** Application name of the runner's own connections, so connection faults never cut the runner. */
export const runnerApplicationName = "gatehouse-sim"

/** Application name the service gives its connections (the default of `pgClientLayer`). */
const serviceApplicationName = "gatehouse"

const providerFault = (mode: string) => {
  switch (mode) {
    case "refuse":
      return { type: "refuse" }
    case "error":
      return { type: "error", status: 503 }
    case "hang":
      return { type: "hang" }
    case "rate-limit":
      return { type: "rateLimit", retryAfterSeconds: 2 }
    case "reset":
      return { type: "reset" }
    default:
      return { type: "malformed" }
  }
}

/** Starts the provider simulator as its own process on free ports, if this checkout has one. */
const startProvider = (dir: string, seed: string) =>
  Effect.gen(function*() {
    if (!Fs.existsSync(Path.join(projectRoot, "src/sim/ProviderSim.ts"))) return undefined
    const [port, controlPort] = [yield* freePort, yield* freePort]
    const logPath = Path.join(dir, "provider-sim.log")
    const child = spawnTs("src/sim/main.ts", {
      SIM_PORT: String(port),
      SIM_CONTROL_PORT: String(controlPort),
      SIM_SEED: String(makeRng(seed).int(1_000_000)),
      SIM_EVENTS: "0",
      SIM_TICKETS: "0"
    }, logPath)
    yield* Effect.addFinalizer(() => terminate(child, "5 seconds"))
    const controlUrl = `http://127.0.0.1:${controlPort}`
    yield* waitHttpOk("provider simulator", `${controlUrl}/_sim/state`, child, logPath, "60 seconds")
    const state = yield* Effect.promise(() => fetch(`${controlUrl}/_sim/state`).then((r) => r.json() as Promise<any>))
    const control = (method: string, path: string, body?: unknown) =>
      Effect.tryPromise(async () => {
        const response = await fetch(`${controlUrl}${path}`, {
          method,
          headers: { "content-type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) })
        })
        const text = await response.text()
        if (!response.ok) throw new Error(`provider simulator ${method} ${path}: ${response.status} ${text}`)
        return text === "" ? undefined : JSON.parse(text)
      })
    const provider: Provider = { apiUrl: String(state.baseUrl), controlUrl, control }
    return provider
  })

const capabilitiesOf = (baseUrl: string) =>
  Effect.promise(async (): Promise<Capabilities> => {
    const spec = await fetch(`${baseUrl}/openapi.json`).then((r) => r.json() as Promise<any>, () => ({ paths: {} }))
    const entries = new Set<string>()
    for (const [path, methods] of Object.entries<Record<string, unknown>>(spec.paths ?? {})) {
      for (const method of Object.keys(methods)) entries.add(`${method.toUpperCase()} ${path}`)
    }
    const schemas = new Set(Object.keys(spec.components?.schemas ?? {}))
    return {
      paths: entries,
      has: (method, path) => entries.has(`${method.toUpperCase()} ${path}`),
      hasSchema: (name) => schemas.has(name)
    }
  })

/**
 * One run of a scenario against real service processes: start the database, the provider
 * simulator and the instances; set up; run the load while the fault plan fires; drain; check the
 * invariants against the database; print the report. Returns the summary; the caller decides the
 * exit code from its failed checks.
 */
export const run = (scenario: Scenario, options: RunOptions, title: string) =>
  Effect.scoped(Effect.gen(function*() {
    const stats = new Stats()
    const rng = makeRng(options.seed)
    const totalMs = options.durationSeconds * 1000
    const display = new Display(stats, {
      out: options.out,
      plainIntervalMs: 3_000,
      totalMs,
      quiet: options.quiet
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => display.stop()))

    // Everything the run writes (logs, embedded data, secrets) stays in one temporary folder.
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), `gatehouse-${options.mode}-`))
    // As root the embedded server runs as the postgres user, which must be able to enter it.
    Fs.chmodSync(dir, 0o755)
    yield* Effect.addFinalizer((exit) =>
      Effect.sync(() => {
        if (options.keep || (Exit.isFailure(exit) && !Exit.isInterrupted(exit))) {
          if (!options.quiet) options.out.write(`  logs and data kept in ${dir}\n`)
        } else {
          Fs.rmSync(dir, { recursive: true, force: true })
        }
      })
    )

    display.setPhase("starting the database, the provider simulator and the service")
    const adminKey = `gh_admin_${Crypto.randomBytes(18).toString("base64url")}`
    const masterKey = Crypto.randomBytes(32).toString("base64")

    // One instance may keep the service's own embedded mode; several share one database, which
    // without DATABASE_URL is an embedded server that this runner starts.
    let databaseUrl = options.databaseUrl
    let databaseLabel = databaseUrl === undefined ? "embedded PostgreSQL" : "PostgreSQL from DATABASE_URL"
    const embeddedByService = databaseUrl === undefined && options.instances === 1
    if (databaseUrl === undefined && !embeddedByService) {
      const server = yield* embeddedServer(Path.join(dir, "pg"), Crypto.randomBytes(12).toString("hex"))
      yield* ensureDatabase(server.url("postgres"), "gatehouse")
      databaseUrl = server.url("gatehouse")
      databaseLabel = "embedded PostgreSQL shared by the instances"
    }

    yield* Effect.addFinalizer(() => removeBundles)
    yield* Effect.all([bundle("src/main.ts"), bundle("src/sim/main.ts")], { concurrency: 2 })
    const provider = yield* startProvider(dir, options.seed)

    const instances: Array<ServiceInstance> = []
    for (let index = 0; index < options.instances; index++) {
      const dataDir = Path.join(dir, `instance-${index}`)
      Fs.mkdirSync(dataDir, { recursive: true, mode: 0o755 })
      instances.push(
        new ServiceInstance({
          index,
          port: yield* freePort,
          logDir: dir,
          readyBudget: "120 seconds",
          env: {
            DATA_DIR: dataDir,
            ADMIN_KEY: adminKey,
            MASTER_KEY: masterKey,
            LOG_FORMAT: "json",
            LOG_LEVEL: "info",
            SHUTDOWN_GRACE_MS: "5000",
            ...(databaseUrl === undefined ? {} : { DATABASE_URL: databaseUrl }),
            // A demo lasts a minute: sync every second, let an open breaker probe after three seconds and
            // write-backs try again at least every five.
            ...(provider === undefined ? {} : {
              TICKET_PROVIDER_URL: provider.apiUrl,
              TICKET_SYNC_INTERVAL_MS: "1000",
              TICKET_PROVIDER_BREAKER_OPEN_MS: "3000",
              CHECKIN_WRITEBACK_PAUSE_MAX_MS: "5000"
            })
          }
        })
      )
    }
    yield* Effect.addFinalizer(() =>
      Effect.forEach(instances, (i) => i.stop(), { concurrency: "unbounded", discard: true }).pipe(
        Effect.zipRight(embeddedByService ? stopEmbeddedPostmaster(instances[0]!.options.env.DATA_DIR!) : Effect.void)
      )
    )
    yield* Effect.forEach(instances, (i) => i.start(), { concurrency: "unbounded", discard: true })

    const url = databaseUrl ?? embeddedDatabaseUrl(instances[0]!.options.env.DATA_DIR!)
    if (url === undefined) {
      return yield* new ProcessFailed({ name: "service", reason: "left no embedded database to check", logTail: "" })
    }
    const sqlContext = yield* Layer.build(
      pgClientLayer({
        url: Redacted.make(url),
        maxConnections: 4,
        connectTimeoutMs: 10_000,
        applicationName: runnerApplicationName
      })
    )
    const sql = Context.get(sqlContext, SqlClient.SqlClient)
    const capabilities = yield* capabilitiesOf(instances[0]!.baseUrl)

    const targets = () => instances.filter((i) => i.running).map((i) => i.baseUrl)
    const world: World = {
      options,
      stats,
      display,
      rng,
      instances,
      targets,
      client: (device) =>
        makeClient({
          targets,
          rates: options.schedule.rates,
          stats,
          rng: rng.fork(`device:${device}`),
          attemptTimeoutMs: 15_000,
          giveUpAfterMs: 120_000
        }),
      adminKey,
      provider,
      capabilities,
      sql,
      offline: { gate: false, kiosk: false },
      stopping: { value: false }
    }

    display.setPhase(`setting up (${scenario.name})`)
    yield* scenario.setup(world)

    // Faults: what happened to each one is kept, so the report can say what the run survived.
    const restartFailures: Array<string> = []
    // Outages of one thing do not overlap: a second one waits for the first to end, so that the
    // first's recovery does not cut the second short.
    const lanes = {
      provider: yield* Effect.makeSemaphore(1),
      gate: yield* Effect.makeSemaphore(1),
      kiosk: yield* Effect.makeSemaphore(1)
    }
    const inject = (fault: TimedFault) => {
      const lane = fault.kind === "provider-outage"
        ? lanes.provider
        : fault.kind === "device-offline"
        ? lanes[fault.device]
        : undefined
      const effect = injectFault(world, fault, restartFailures)
      return lane === undefined ? effect : lane.withPermits(1)(effect)
    }
    const planned = plan(options.schedule, options.durationSeconds, rng.fork("faults"))

    display.start()
    stats.startLoad()
    display.setPhase(`running for ${options.durationSeconds}s with ${planned.length} timed faults`)
    const faults = yield* runPlan(
      planned,
      inject,
      (fault, error) => Effect.sync(() => display.event(`fault failed: ${describeFault(fault)}: ${String(error)}`))
    ).pipe(Effect.fork)
    const load = yield* scenario.load(world).pipe(Effect.fork)
    yield* Effect.sleep(Duration.millis(totalMs))
    world.stopping.value = true
    yield* Fiber.join(faults)
    display.setPhase("load over; waiting for devices to finish")
    const loadExit = yield* Fiber.await(load)

    // Every instance must be up for the drain: a fault schedule may end with one down.
    for (const instance of instances) {
      if (!instance.running) {
        yield* instance.start().pipe(Effect.catchAll((e) => Effect.sync(() => restartFailures.push(e.message))))
      }
    }
    display.setPhase("draining: offline uploads, sync, outbox")
    const drainExit = yield* scenario.drain(world).pipe(
      Effect.timeout(Duration.seconds(options.drainSeconds)),
      Effect.exit
    )
    display.setPhase("checking the invariants against the database")
    const checks: Array<Check> = []
    checks.push(
      restartFailures.length === 0
        ? pass("every killed instance came back", `${stats.get("kills")} SIGKILLs, ${stats.get("restarts")} restarts`)
        : fail("every killed instance came back", restartFailures.join("; "))
    )
    if (Exit.isFailure(loadExit) && !Exit.isInterrupted(loadExit)) {
      checks.push(fail("the devices ran to the end", String(Exit.isFailure(loadExit) ? loadExit.cause : "")))
    }
    if (Exit.isFailure(drainExit)) {
      checks.push(fail("the run drained", `the drain did not finish within ${options.drainSeconds}s`))
    }
    checks.push(...(yield* scenario.checks(world)))
    display.stop()

    const summary: RunSummary = {
      title,
      seed: options.seed,
      durationMs: stats.elapsedMs(),
      database: databaseLabel,
      instances: options.instances,
      stats: stats.snapshot(),
      notes: stats.notes(),
      checks
    }
    options.out.write(renderReport(summary))
    if (failed(checks).length > 0 && !options.quiet) {
      for (const instance of instances) {
        options.out.write(`\n--- last lines of ${Path.basename(instance.logPath)} ---\n${tail(instance.logPath, 15)}\n`)
      }
    }
    return summary
  }))

/** Carries out one fault of the plan. */
const injectFault = (world: World, fault: TimedFault, restartFailures: Array<string>) =>
  Effect.gen(function*() {
    const { display, stats } = world
    stats.inc("faults")
    switch (fault.kind) {
      case "kill-service": {
        // Only an instance that is up may be killed: one still restarting from the last kill is left
        // alone, and with several instances one always stays up, as in a rolling failure.
        const ready = world.instances.filter((i) => i.ready)
        if (world.instances.length > 1 && ready.length < 2) {
          display.event("fault skipped: only one service instance is up")
          return
        }
        const chosen = fault.instance !== undefined
          ? world.instances[fault.instance % world.instances.length]
          : ready.length > 0
          ? world.rng.pick(ready)
          : undefined
        if (chosen === undefined || !chosen.ready) {
          display.event("fault skipped: no service instance is up to be killed")
          return
        }
        const instance = chosen
        const pid = yield* instance.kill()
        stats.inc("kills")
        display.event(
          `fault: SIGKILL service instance ${instance.options.index} (pid ${
            pid ?? "-"
          }), restart in ${fault.restartAfter}s`
        )
        yield* Effect.sleep(Duration.seconds(fault.restartAfter))
        yield* instance.start().pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              stats.inc("restarts")
              display.event(`instance ${instance.options.index} restarted (pid ${instance.pid}) and ready`)
            })
          ),
          Effect.catchAll((error) => Effect.sync(() => restartFailures.push(error.message)))
        )
        return
      }
      case "terminate-db-connections": {
        // Cut connections of a running service: wait a little for one while an instance restarts.
        for (let i = 0; i < 100 && !world.instances.some((i) => i.ready); i++) yield* Effect.sleep("200 millis")
        const rows = yield* world.sql<{ terminated: number }>`
          SELECT count(*)::int AS terminated FROM (
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database()
              AND application_name = ${serviceApplicationName}
              AND pid <> pg_backend_pid()
          ) t
        `
        stats.inc("dbTerminations")
        display.event(`fault: terminated ${rows[0]?.terminated ?? 0} database connections of the service`)
        return
      }
      case "provider-outage": {
        const provider = world.provider
        if (provider === undefined) return
        stats.inc("providerOutages")
        display.event(`fault: ticketing provider ${fault.mode} for ${fault.duration}s`)
        if (fault.mode === "slow") yield* provider.control("PUT", "/_sim/latency", { ms: 3_000 })
        else yield* provider.control("PUT", "/_sim/faults", { fault: providerFault(fault.mode) })
        yield* Effect.sleep(Duration.seconds(fault.duration))
        if (fault.mode === "slow") yield* provider.control("PUT", "/_sim/latency", { ms: 0 })
        else yield* provider.control("DELETE", "/_sim/faults")
        display.event("ticketing provider recovered")
        return
      }
      case "device-offline": {
        stats.inc("deviceOutages")
        display.event(`fault: ${fault.device} devices offline for ${fault.duration}s (buffering)`)
        world.offline[fault.device] = true
        yield* Effect.sleep(Duration.seconds(fault.duration))
        world.offline[fault.device] = false
        display.event(`${fault.device} devices back online, uploading what they buffered`)
        return
      }
    }
  })

/** Exit code of a run: 0 when every invariant held. */
export const exitCode = (summary: RunSummary) => failed(summary.checks).length === 0 ? 0 : 1

export const noneIfEmpty = (value: string | undefined) =>
  value === undefined || value === "" ? Option.none() : Option.some(value)
