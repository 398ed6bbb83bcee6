import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { PassThrough } from "node:stream"
import { chaosSchedule } from "../../src/sim/Faults.js"
import { makeFleetScenario } from "../../src/sim/Fleet.js"
import { failed } from "../../src/sim/Report.js"
import { run } from "../../src/sim/Run.js"
import type { RunOptions } from "../../src/sim/World.js"
import { freshDatabase } from "../support/Database.js"

/**
 * `npm run chaos`, shortened: three service instances on one fresh database, killed at random
 * and restarted while the load runs. Only invariants are asserted, never timings.
 */
describe("npm run chaos", () => {
  it.live("a 20-second run of three instances killed at random keeps every invariant", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase
      const out = new PassThrough()
      let text = ""
      out.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8")
      })
      const options: RunOptions = {
        mode: "chaos",
        seed: "ci-chaos",
        durationSeconds: 20,
        people: 40,
        instances: 3,
        databaseUrl: db.url,
        schedule: chaosSchedule(),
        out,
        quiet: false,
        keep: false,
        drainSeconds: 120
      }

      const summary = yield* run(makeFleetScenario(), options, "chaos (test)")

      const verdict = (name: string) => summary.checks.find((c) => c.name === name)?.status
      expect(failed(summary.checks), text).toEqual([])
      expect(summary.stats.kills, text).toBeGreaterThan(0)
      // Gates really scanned: someone got in, a stranger was turned away, and the checks ran.
      expect(summary.stats.admitted, text).toBeGreaterThan(0)
      expect(summary.stats.strangersDenied, text).toBeGreaterThan(0)
      expect(verdict("every accepted scan applied once"), text).toBe("pass")
      expect(verdict("no ticket admitted twice between exits"), text).toBe("pass")
      expect(verdict("every granted check-in written back to the provider once"), text).toBe("pass")
    }).pipe(Effect.scoped), 300_000)
})
