import { describe, expect, it } from "@effect/vitest"
import { renderStatus } from "../../src/sim/Progress.js"
import {
  admittedTwice,
  duplicates,
  expectNone,
  fail,
  pass,
  rateCheck,
  renderReport,
  skip
} from "../../src/sim/Report.js"
import { Stats } from "../../src/sim/Stats.js"

describe("invariant checks", () => {
  it("finds tickets that entered twice without an exit between", () => {
    const passages = [
      { ticket: "t1", direction: "entry" as const, order: 1 },
      { ticket: "t1", direction: "exit" as const, order: 2 },
      { ticket: "t1", direction: "entry" as const, order: 3 },
      { ticket: "t2", direction: "entry" as const, order: 5 },
      { ticket: "t2", direction: "entry" as const, order: 4 },
      { ticket: "t3", direction: "exit" as const, order: 6 }
    ]

    expect(admittedTwice(passages)).toEqual(["t2"])
  })

  it("finds duplicate keys", () => {
    expect(duplicates(["a", "b", "a", "c", "c", "c"], (x) => x)).toEqual(["a", "c"])
  })

  it("checks a rate against its bound and skips an empty population", () => {
    expect(rateCheck("r", "x", 19, 20, { atLeast: 0.95 }).status).toBe("pass")
    expect(rateCheck("r", "x", 18, 20, { atLeast: 0.95 }, ["p1", "p2"])).toMatchObject({
      status: "fail",
      ids: ["p1", "p2"]
    })
    expect(rateCheck("r", "x", 0, 0, { atLeast: 1 }).status).toBe("skip")
  })

  it("fails with the offending ids", () => {
    expect(expectNone("n", [], "fine", () => "bad").status).toBe("pass")
    expect(expectNone("n", [3, 4], "fine", (n) => `${n} bad`)).toMatchObject({
      status: "fail",
      detail: "2 bad",
      ids: ["3", "4"]
    })
  })
})

describe("report", () => {
  const stats = new Stats()
  stats.inc("kills", 2)
  stats.note("fault: SIGKILL service instance 0 (pid 42)")
  stats.note("instance 0 restarted")

  it("lists the faults survived and every verdict, and says PASS when none failed", () => {
    const text = renderReport({
      title: "demo",
      seed: "7",
      durationMs: 20_000,
      database: "embedded",
      instances: 1,
      stats: stats.snapshot(),
      notes: stats.notes(),
      checks: [pass("a", "ok"), skip("b", "not yet")]
    })

    expect(text).toContain("Faults injected (1):")
    expect(text).toContain("SIGKILL service instance 0 (pid 42)")
    expect(text).not.toContain("instance 0 restarted")
    expect(text).toContain("PASS  a: ok")
    expect(text).toContain("SKIP  b: not yet")
    expect(text).toMatch(/RESULT: PASS \(1 invariants held, 1 skipped\)/)
  })

  it("names the failed invariant and the ids involved", () => {
    const ids = Array.from({ length: 12 }, (_, i) => `id${i}`)
    const text = renderReport({
      title: "demo",
      seed: "7",
      durationMs: 1,
      database: "embedded",
      instances: 3,
      stats: stats.snapshot(),
      notes: [],
      checks: [pass("a", "ok"), fail("no ticket admitted twice", "2 tickets", ids)]
    })

    expect(text).toContain("FAIL  no ticket admitted twice: 2 tickets")
    expect(text).toContain("ids: id0, id1, id2, id3, id4, id5, id6, id7, id8, id9 and 2 more")
    expect(text).toContain("RESULT: FAIL (no ticket admitted twice)")
  })

  it("renders the live status lines", () => {
    const lines = renderStatus(stats.snapshot(), 12_300, { elapsedMs: 2_000, totalMs: 20_000 }, "running")

    expect(lines[0]).toBe("[12.3s · load 2.0s/20.0s] running")
    expect(lines.join("\n")).toContain("2 SIGKILL")
  })
})
