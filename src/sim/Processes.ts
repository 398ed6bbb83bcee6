import { Data, Duration, Effect, type Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Url from "node:url"

/** The repository root, where `src/main.ts` and the `tsx` loader are. */
export const projectRoot = Path.resolve(Path.dirname(Url.fileURLToPath(import.meta.url)), "../..")

export class ProcessFailed extends Data.TaggedError("ProcessFailed")<{
  readonly name: string
  readonly reason: string
  readonly logTail: string
}> {
  override get message() {
    return `${this.name} ${this.reason}${this.logTail === "" ? "" : `\n--- last lines of its log ---\n${this.logTail}`}`
  }
}

/** Every child this process started and has not seen exit: killed if the runner itself exits. */
const live = new Set<ChildProcess.ChildProcess>()
let exitHookInstalled = false
const installExitHook = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once("exit", () => {
    for (const child of live) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    }
  })
}

export const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

export const tail = (path: string, lines = 30): string => {
  try {
    return Fs.readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n")
  } catch {
    return ""
  }
}

const bundles = new Map<string, string>()

/**
 * Bundles `entry` (our TypeScript, with packages left external) into one ES module under
 * `node_modules/.cache`, where its package imports resolve. A bundled process starts with about a
 * third of the CPU time of one that compiles every file through the tsx loader, which matters when
 * instances are killed and restarted every few seconds on a small machine. Without esbuild (it
 * comes with tsx) the caller falls back to the loader.
 */
export const bundle = (entry: string) =>
  Effect.promise(async (): Promise<string | undefined> => {
    const done = bundles.get(entry)
    if (done !== undefined && Fs.existsSync(done)) return done
    try {
      const esbuild = await import("esbuild")
      const dir = Path.join(projectRoot, "node_modules", ".cache", "gatehouse-sim")
      Fs.mkdirSync(dir, { recursive: true })
      const outfile = Path.join(dir, `${entry.replace(/\.ts$/, "").replace(/[^A-Za-z0-9]+/g, "-")}-${process.pid}.mjs`)
      await esbuild.build({
        entryPoints: [Path.join(projectRoot, entry)],
        bundle: true,
        platform: "node",
        format: "esm",
        target: "node20",
        packages: "external",
        outfile,
        logLevel: "silent"
      })
      bundles.set(entry, outfile)
      return outfile
    } catch {
      return undefined
    }
  })

/** Removes the bundles this process made. */
export const removeBundles = Effect.sync(() => {
  for (const file of bundles.values()) Fs.rmSync(file, { force: true })
  bundles.clear()
})

/**
 * Starts `entry` with node directly (not through npx or npm), so the pid we hold is the process
 * that serves, and a SIGKILL to it kills exactly that process: the bundle when there is one,
 * else the TypeScript through the tsx loader. Output goes to `logPath`.
 */
export const spawnTs = (entry: string, env: Record<string, string>, logPath: string): ChildProcess.ChildProcess => {
  installExitHook()
  const log = Fs.openSync(logPath, "a")
  const bundled = bundles.get(entry)
  const args = bundled !== undefined && Fs.existsSync(bundled)
    ? [bundled]
    : ["--import", "tsx", Path.join(projectRoot, entry)]
  const child = ChildProcess.spawn(process.execPath, args, {
    cwd: projectRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", log, log]
  })
  Fs.closeSync(log)
  live.add(child)
  child.once("exit", () => live.delete(child))
  return child
}

const exited = (child: ChildProcess.ChildProcess) => child.exitCode !== null || child.signalCode !== null

/** Waits for the child to exit, for at most `timeout`; true when it did. */
export const waitExit = (child: ChildProcess.ChildProcess, timeout: Duration.DurationInput) =>
  Effect.async<boolean>((resume) => {
    if (exited(child)) return resume(Effect.succeed(true))
    const timer = setTimeout(() => resume(Effect.succeed(false)), Duration.toMillis(timeout))
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.succeed(true))
    })
  })

/** Polls `url` until it answers 200, the child exits, or the budget runs out. */
export const waitHttpOk = (
  name: string,
  url: string,
  child: ChildProcess.ChildProcess,
  logPath: string,
  budget: Duration.DurationInput
) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(budget)
    while (true) {
      if (exited(child)) {
        return yield* new ProcessFailed({
          name,
          reason: `exited (${child.exitCode ?? child.signalCode}) before it was ready`,
          logTail: tail(logPath)
        })
      }
      const ok = yield* Effect.promise(() =>
        fetch(url, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false)
      )
      if (ok) return
      if (Date.now() > deadline) {
        return yield* new ProcessFailed({
          name,
          reason: `not ready after ${Duration.format(budget)}`,
          logTail: tail(logPath)
        })
      }
      yield* Effect.sleep("150 millis")
    }
  })

/** Stops a child: SIGTERM, then SIGKILL if it has not exited within `grace`. */
export const terminate = (child: ChildProcess.ChildProcess, grace: Duration.DurationInput) =>
  Effect.gen(function*() {
    if (exited(child)) return
    child.kill("SIGTERM")
    if (!(yield* waitExit(child, grace))) {
      child.kill("SIGKILL")
      yield* waitExit(child, "5 seconds")
    }
  })

export interface ServiceOptions {
  readonly index: number
  readonly port: number
  readonly env: Record<string, string>
  readonly logDir: string
  readonly readyBudget: Duration.DurationInput
}

/**
 * One Gatehouse instance as a child process on a fixed port, so devices find it again after a
 * restart. `kill` sends SIGKILL to this instance's pid and nothing else.
 */
export class ServiceInstance {
  private child: ChildProcess.ChildProcess | undefined
  private generation = 0
  private starting = false
  readonly baseUrl: string
  readonly logPath: string

  constructor(readonly options: ServiceOptions) {
    this.baseUrl = `http://127.0.0.1:${options.port}`
    this.logPath = Path.join(options.logDir, `service-${options.index}.log`)
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  get running(): boolean {
    return this.child !== undefined && !exited(this.child)
  }

  /** Running and past its readiness check: the only state in which a fault may kill it. */
  get ready(): boolean {
    return this.running && !this.starting
  }

  /** Starts the process and waits until `/health/ready` answers 200. */
  start(): Effect.Effect<void, ProcessFailed> {
    return Effect.suspend(() => {
      this.generation++
      Fs.appendFileSync(this.logPath, `\n=== start ${this.generation} at ${new Date().toISOString()} ===\n`)
      const child = spawnTs("src/main.ts", {
        ...this.options.env,
        PORT: String(this.options.port),
        HOST: "127.0.0.1"
      }, this.logPath)
      this.child = child
      this.starting = true
      return waitHttpOk(
        `service instance ${this.options.index}`,
        `${this.baseUrl}/health/ready`,
        child,
        this.logPath,
        this.options.readyBudget
      ).pipe(Effect.ensuring(Effect.sync(() => {
        this.starting = false
      })))
    })
  }

  /** SIGKILL, no grace: what a crash or the OOM killer does. Returns the pid it killed. */
  kill(): Effect.Effect<number | undefined> {
    return Effect.gen(this, function*() {
      const child = this.child
      if (child === undefined || exited(child)) return undefined
      child.kill("SIGKILL")
      yield* waitExit(child, "10 seconds")
      return child.pid
    })
  }

  stop(grace: Duration.DurationInput = "15 seconds"): Effect.Effect<void> {
    return Effect.suspend(() => this.child === undefined ? Effect.void : terminate(this.child, grace))
  }
}

/** Starts `instance` for the life of the scope; the scope stops it gracefully. */
export const scopedInstance = (instance: ServiceInstance): Effect.Effect<ServiceInstance, ProcessFailed, Scope.Scope> =>
  Effect.acquireRelease(Effect.as(instance.start(), instance), (i) => i.stop())

/** A server left by the embedded mode of the service: pid and port from `postmaster.pid`. */
export const embeddedPostmaster = (dataDir: string): { readonly pid: number; readonly port: number } | undefined => {
  try {
    const lines = Fs.readFileSync(Path.join(dataDir, "pg", "postmaster.pid"), "utf8").split("\n")
    const pid = Number(lines[0])
    const port = Number(lines[3])
    process.kill(pid, 0)
    return Number.isInteger(pid) && Number.isInteger(port) ? { pid, port } : undefined
  } catch {
    return undefined
  }
}

/** The URL of the database a service in embedded mode created in `dataDir`. */
export const embeddedDatabaseUrl = (dataDir: string): string | undefined => {
  const postmaster = embeddedPostmaster(dataDir)
  if (postmaster === undefined) return undefined
  const secrets = JSON.parse(Fs.readFileSync(Path.join(dataDir, "secrets.json"), "utf8")) as {
    readonly embeddedDbPassword: string
  }
  return `postgres://postgres:${encodeURIComponent(secrets.embeddedDbPassword)}@127.0.0.1:${postmaster.port}/gatehouse`
}

/**
 * Stops the embedded PostgreSQL server that a service instance started in our temporary
 * `dataDir`. After a SIGKILL the restarted instance adopts the running server instead of
 * starting one, so nobody's finalizer stops it: the runner does, by the pid that server wrote
 * into our own data directory.
 */
export const stopEmbeddedPostmaster = (dataDir: string) =>
  Effect.gen(function*() {
    const postmaster = embeddedPostmaster(dataDir)
    if (postmaster === undefined) return
    // SIGINT is PostgreSQL's fast shutdown: roll back open transactions and stop cleanly.
    yield* Effect.sync(() => process.kill(postmaster.pid, "SIGINT"))
    const deadline = Date.now() + 15_000
    while (Date.now() < deadline) {
      const alive = yield* Effect.sync(() => {
        try {
          process.kill(postmaster.pid, 0)
          return true
        } catch {
          return false
        }
      })
      if (!alive) return
      yield* Effect.sleep("100 millis")
    }
  })
