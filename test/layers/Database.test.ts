import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import Pg from "pg"
import { embeddedServer } from "../../src/layers/Database.js"

const query = (url: string, text: string) =>
  Effect.promise(async () => {
    const client = new Pg.Client({ connectionString: url })
    await client.connect()
    try {
      return (await client.query(text)).rows
    } finally {
      await client.end()
    }
  })

describe("embedded database", () => {
  it.live("keeps its data across a stop and a start in the same folder", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "gatehouse-embedded-"))
      Fs.chmodSync(dir, 0o755)
      const pg = Path.join(dir, "pg")

      yield* Effect.scoped(Effect.flatMap(embeddedServer(pg, "secret"), (server) =>
        query(server.url("postgres"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")))
      const rows = yield* Effect.scoped(Effect.flatMap(embeddedServer(pg, "secret"), (server) =>
        query(server.url("postgres"), "SELECT v FROM kept")))

      expect(rows).toEqual([{ v: "still here" }])
      Fs.rmSync(dir, { recursive: true, force: true })
    }), 60_000)

  it.live("stops within its limit when the server does not stop (a frozen postmaster)", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "gatehouse-embedded-"))
      Fs.chmodSync(dir, 0o755)
      const pg = Path.join(dir, "pg")
      const scope = yield* Scope.make()
      yield* embeddedServer(pg, "secret").pipe(Scope.extend(scope))
      const pid = Number(Fs.readFileSync(Path.join(pg, "postmaster.pid"), "utf8").split("\n")[0])
      const alive = () => {
        try {
          process.kill(pid, 0)
          return true
        } catch {
          return false
        }
      }

      process.kill(pid, "SIGSTOP")
      const stopped = yield* Scope.close(scope, Exit.void).pipe(Effect.timeoutOption("30 seconds"))
      // Thawed, the server carries out the stop request it was sent and exits.
      process.kill(pid, "SIGCONT")
      for (let i = 0; i < 100 && alive(); i++) yield* Effect.sleep("100 millis")

      expect(Option.isSome(stopped)).toBe(true)
      expect(alive()).toBe(false)
      Fs.rmSync(dir, { recursive: true, force: true })
    }), 90_000)
})
