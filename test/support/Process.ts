import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

/** One master key for every service a test file starts: instances sharing a database need one. */
const sharedMasterKey = Crypto.randomBytes(32).toString("base64")

export interface ServiceProcess {
  readonly pid: number
  /** Base URL once the process listens. */
  readonly url: string
  /** Everything the process printed so far. */
  readonly output: () => string
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  readonly exited: Promise<number | string>
  readonly signal: (signal: NodeJS.Signals) => void
}

/**
 * Starts `src/main.ts` (or another entry) as a real child process on a free port and waits until
 * it listens. The scope kills it (SIGKILL) if the test left it running.
 */
export const spawnService = (env: Record<string, string>, entry = "src/main.ts") =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<ServiceProcess>((resolve, reject) => {
        const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "gatehouse-proc-"))
        // One process, not a tsx wrapper that relays signals: the pid we signal is the service.
        const child = ChildProcess.spawn(process.execPath, ["--import", "tsx", entry], {
          env: {
            ...process.env,
            PORT: "0",
            HOST: "127.0.0.1",
            LOG_FORMAT: "json",
            DATA_DIR: dataDir,
            ADMIN_KEY: "gh_admin_test",
            MASTER_KEY: sharedMasterKey,
            ...env
          },
          stdio: ["ignore", "pipe", "pipe"]
        })
        let output = ""
        const exited = new Promise<number | string>((done) =>
          child.once("exit", (code, signal) => done(code ?? signal ?? "unknown"))
        )
        const onData = (chunk: Buffer) => {
          output += chunk.toString("utf8")
          const listening = /Listening on (http:\/\/[0-9.]+:[0-9]+)[^0-9]/.exec(output)
          if (listening?.[1] !== undefined) {
            resolve({
              pid: child.pid!,
              url: listening[1],
              output: () => output,
              exited,
              signal: (signal) => child.kill(signal)
            })
          }
        }
        child.stdout.on("data", onData)
        child.stderr.on("data", onData)
        void exited.then((code) => reject(new Error(`service exited with ${code} before listening:\n${output}`)))
      })
    ),
    (service) =>
      Effect.promise(async () => {
        service.signal("SIGKILL")
        await service.exited
      })
  )
