import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { PassThrough } from "node:stream"
import { defaultSchedule } from "../../src/sim/Faults.js"
import { makeFleetScenario } from "../../src/sim/Fleet.js"
import { failed } from "../../src/sim/Report.js"
import { run } from "../../src/sim/Run.js"
import type { RunOptions } from "../../src/sim/World.js"

/** Collects what a run prints, to show it when an invariant fails. */
const capture = () => {
  const out = new PassThrough()
  let text = ""
  out.on("data", (chunk: Buffer) => {
    text += chunk.toString("utf8")
  })
  return { out, text: () => text }
}

/**
 * The demo as `npm run demo` runs it, shortened: one service process on its own embedded
 * database in a temporary folder, the provider simulator, the fleet and every kind of fault.
 * Only invariants are asserted, never timings: a loaded machine makes the run slower, not wrong.
 */
describe("npm run demo", () => {
  it.live("a 20-second run with every kind of fault keeps every invariant", () =>
    Effect.gen(function*() {
      const { out, text } = capture()
      const options: RunOptions = {
        mode: "demo",
        seed: "ci-demo",
        durationSeconds: 20,
        people: 40,
        instances: 1,
        databaseUrl: undefined,
        schedule: defaultSchedule(),
        out,
        quiet: false,
        keep: false,
        drainSeconds: 120
      }

      const summary = yield* run(makeFleetScenario(), options, "demo (test)")

      const verdict = (name: string) => summary.checks.find((c) => c.name === name)?.status
      expect(failed(summary.checks), text()).toEqual([])
      expect(summary.stats.kills, text()).toBeGreaterThan(0)
      // Gates really scanned: someone got in, a stranger was turned away, and the checks ran.
      expect(summary.stats.admitted, text()).toBeGreaterThan(0)
      expect(summary.stats.strangersDenied, text()).toBeGreaterThan(0)
      expect(verdict("every accepted scan applied once"), text()).toBe("pass")
      expect(verdict("no ticket admitted twice between exits"), text()).toBe("pass")
      expect(verdict("every granted check-in written back to the provider once"), text()).toBe("pass")
    }), 300_000)
})
