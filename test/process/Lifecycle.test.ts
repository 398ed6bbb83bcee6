import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { freshDatabase } from "../support/Database.js"
import { spawnService } from "../support/Process.js"

const ready = (url: string) => Effect.promise(async () => (await fetch(`${url}/health/ready`)).status)

describe("the service process", () => {
  it.live("two instances started together on one empty database both become ready", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase

      const [a, b] = yield* Effect.all([
        spawnService({ DATABASE_URL: db.url }),
        spawnService({ DATABASE_URL: db.url })
      ], { concurrency: "unbounded" })

      expect(yield* ready(a.url)).toBe(200)
      expect(yield* ready(b.url)).toBe(200)
    }).pipe(Effect.scoped), 90_000)

  it.live("exits 0 after SIGTERM, having stopped accepting connections", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase
      const service = yield* spawnService({ DATABASE_URL: db.url })
      expect(yield* ready(service.url)).toBe(200)

      service.signal("SIGTERM")
      const code = yield* Effect.promise(() => service.exited)

      expect(code).toBe(0)
      expect(service.output()).toContain("shutting down")
      const refused = yield* Effect.promise(() => fetch(`${service.url}/health/live`).then(() => false, () => true))
      expect(refused).toBe(true)
    }).pipe(Effect.scoped), 90_000)

  it.live("reports an unreachable database and exits non-zero instead of hanging", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.promise(() =>
        Effect.runPromise(
          Effect.scoped(
            spawnService({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/none", DB_STARTUP_TIMEOUT_MS: "1500" })
          )
        ).then(() => "listened", (error: Error) => error.message)
      )

      expect(exit).toMatch(/exited with 1 before listening/)
      expect(exit).toContain("database unreachable, retrying")
    }), 90_000)
})
