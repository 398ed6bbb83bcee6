import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, TestClock } from "effect"
import {
  decodeSchedule,
  defaultSchedule,
  parseSchedule,
  plan,
  type PlannedFault,
  resolveAt,
  runPlan,
  type TimedFault
} from "../../src/sim/Faults.js"
import { makeRng } from "../../src/sim/Random.js"

describe("fault schedule", () => {
  it("reads a schedule from JSON with defaults filled in", () => {
    const parsed = parseSchedule(JSON.stringify({
      rates: { duplicate: 0.2 },
      events: [{ kind: "kill-service", at: 5 }, { kind: "provider-outage", at: "50%", duration: 3 }]
    }))

    expect(Either.isRight(parsed)).toBe(true)
    const schedule = Either.getOrThrow(parsed)
    expect(schedule.rates).toEqual({ duplicate: 0.2, dropResponse: 0, timeout: 0, resendBatch: 0 })
    expect(schedule.events[0]).toEqual({ kind: "kill-service", at: 5, restartAfter: 1 })
    expect(schedule.events[1]).toMatchObject({ mode: "refuse" })
  })

  it("names the field of an invalid schedule", () => {
    const bad = parseSchedule(JSON.stringify({ events: [{ kind: "kill-service", at: -1 }] }))
    const unknown = parseSchedule(JSON.stringify({ events: [{ kind: "meteor", at: 1 }] }))
    const extra = parseSchedule(JSON.stringify({ rates: { duplicat: 0.1 } }))

    expect(Either.isLeft(bad) && bad.left).toMatch(/events/)
    expect(Either.isLeft(unknown)).toBe(true)
    expect(Either.isLeft(extra) && extra.left).toMatch(/duplicat/)
    expect(Either.isLeft(parseSchedule("{"))).toBe(true)
  })

  it("resolves shares of the duration", () => {
    expect(resolveAt("25%", 60)).toBe(15)
    expect(resolveAt(7, 60)).toBe(7)
  })

  it("plans every default fault inside the run, in time order, for short and long runs", () => {
    for (const duration of [20, 60, 300]) {
      const planned = plan(defaultSchedule(), duration, makeRng(1))

      expect(planned.map((p) => p.atMs)).toEqual([...planned.map((p) => p.atMs)].sort((a, b) => a - b))
      expect(new Set(planned.map((p) => p.fault.kind))).toEqual(
        new Set(["kill-service", "provider-outage", "terminate-db-connections", "device-offline"])
      )
      expect(planned.every((p) => p.atMs <= duration * 1000)).toBe(true)
    }
  })

  it("repeats a fault with jitter until the end and drops what would outlast the run", () => {
    const schedule = decodeSchedule({
      repeat: [{ every: 10, jitter: 0.2, fault: { kind: "kill-service", restartAfter: 2 } }],
      events: [{ kind: "provider-outage", at: 55, duration: 10 }]
    })

    const planned = plan(schedule, 60, makeRng("r"))

    expect(planned.length).toBeGreaterThanOrEqual(4)
    expect(planned.every((p) => p.fault.kind === "kill-service")).toBe(true)
    expect(planned.every((p) => p.atMs + 2000 <= 60_000)).toBe(true)
  })

  it.effect("fires each fault at its time, concurrently, and survives a failing one", () =>
    Effect.gen(function*() {
      const fired: Array<[number, string]> = []
      const failures: Array<string> = []
      const planned: Array<PlannedFault> = [
        { atMs: 1000, fault: { kind: "terminate-db-connections", at: 1 } },
        { atMs: 2000, fault: { kind: "kill-service", at: 2, restartAfter: 1 } },
        { atMs: 3000, fault: { kind: "terminate-db-connections", at: 3 } }
      ]
      const inject = (fault: TimedFault) =>
        Effect.gen(function*() {
          fired.push([yield* TestClockNow, fault.kind])
          if (fault.kind === "kill-service") return yield* Effect.fail("instance gone")
        })

      const fiber = yield* Effect.fork(runPlan(planned, inject, (f) => Effect.sync(() => failures.push(f.kind))))
      yield* TestClock.adjust("2500 millis")
      const midway = fired.length
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)

      expect(midway).toBe(2)
      expect(fired).toEqual([[1000, "terminate-db-connections"], [2000, "kill-service"], [
        3000,
        "terminate-db-connections"
      ]])
      expect(failures).toEqual(["kill-service"])
    }))
})

const TestClockNow = Effect.clockWith((clock) => clock.currentTimeMillis)
