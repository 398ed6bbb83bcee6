import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const here = Path.dirname(fileURLToPath(import.meta.url))

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const readStatusKb = (pid: number, field: "VmRSS" | "VmHWM"): number | undefined => {
  try {
    const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)
    return match === null ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

/**
 * Peak resident memory of a process over a window. Linux keeps the peak (VmHWM) and lets its owner
 * reset it through `clear_refs`; where that is refused, RSS sampled every 25 ms stands in.
 */
export class MemoryProbe {
  private peakSampled = 0
  private hwmReset = false
  private timer: NodeJS.Timeout | undefined

  constructor(readonly pid: number) {}

  start(): void {
    this.stop()
    this.peakSampled = readStatusKb(this.pid, "VmRSS") ?? 0
    try {
      Fs.writeFileSync(`/proc/${this.pid}/clear_refs`, "5")
      this.hwmReset = true
    } catch {
      this.hwmReset = false
    }
    this.timer = setInterval(() => {
      const rss = readStatusKb(this.pid, "VmRSS")
      if (rss !== undefined && rss > this.peakSampled) this.peakSampled = rss
    }, 25)
    this.timer.unref()
  }

  /** Bytes: the peak since `start`. */
  stop(): number {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    const hwm = this.hwmReset ? readStatusKb(this.pid, "VmHWM") ?? 0 : 0
    const rss = readStatusKb(this.pid, "VmRSS") ?? 0
    return Math.max(this.peakSampled, hwm, rss)
  }
}

interface Pending {
  readonly resolve: (value: any) => void
  readonly reject: (error: Error) => void
}

/** A child process of the bench, answering commands over IPC. */
export interface Child {
  readonly pid: number
  readonly memory: MemoryProbe
  readonly call: <A = unknown>(command: string, args?: Record<string, unknown>) => Promise<A>
  readonly stop: () => Promise<void>
}

/**
 * Forks `bench/server.ts` (the whole service plus bench-only commands) with `env`, and waits for
 * it to say it is ready. The bench measures this process's memory, never its own.
 */
export const forkChild = async (entry: string, env: Record<string, string>): Promise<Child> => {
  const child = ChildProcess.fork(Path.join(here, "..", entry), [], {
    // BENCH_PROFILE_DIR: write a V8 CPU profile of each service process there, to find what limits it.
    execArgv: [
      "--import",
      "tsx",
      ...(process.env.BENCH_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`] : [])
    ],
    env: { ...process.env, ...env },
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const pending = new Map<string, Pending>()
  let exited: Error | undefined

  const ready = new Promise<void>((resolve, reject) => {
    child.on("message", (message: any) => {
      if (message?.type === "ready") return resolve()
      const waiter = pending.get(message?.id)
      if (waiter === undefined) return
      pending.delete(message.id)
      if (message.error !== undefined) waiter.reject(new Error(message.error))
      else waiter.resolve(message.result)
    })
    child.once("exit", (code, signal) => {
      exited = new Error(`bench child ${entry} exited (${code ?? signal})`)
      reject(exited)
      for (const waiter of pending.values()) waiter.reject(exited)
      pending.clear()
    })
  })
  await ready

  return {
    pid: child.pid!,
    memory: new MemoryProbe(child.pid!),
    call: (command, args = {}) =>
      new Promise((resolve, reject) => {
        if (exited !== undefined) return reject(exited)
        const id = Crypto.randomUUID()
        pending.set(id, { resolve, reject })
        child.send({ id, command, args })
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited !== undefined || child.exitCode !== null) return resolve()
        const kill = setTimeout(() => child.kill("SIGKILL"), 20_000)
        child.once("exit", () => {
          clearTimeout(kill)
          resolve()
        })
        child.kill("SIGTERM")
      })
  }
}

/** A private data folder for a child service (secrets file, never a database). */
export const tempDataDir = (): string => Fs.mkdtempSync(Path.join(Os.tmpdir(), "gatehouse-bench-data-"))
