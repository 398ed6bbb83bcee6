import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, FastCheck, Fiber, TestClock } from "effect"
import * as Breaker from "../../src/services/CircuitBreaker.js"

const settings: Breaker.BreakerSettings = { failureThreshold: 3, openMs: 1000, halfOpenProbes: 2 }

type Step =
  | { readonly _tag: "start" }
  | { readonly _tag: "end"; readonly which: number; readonly outcome: Breaker.Outcome }
  | { readonly _tag: "wait"; readonly ms: number }

const step: FastCheck.Arbitrary<Step> = FastCheck.oneof(
  FastCheck.constant({ _tag: "start" as const }),
  FastCheck.record({
    _tag: FastCheck.constant("end" as const),
    which: FastCheck.nat(20),
    outcome: FastCheck.constantFrom<Breaker.Outcome>("success", "failure", "failure", "neutral")
  }),
  FastCheck.record({ _tag: FastCheck.constant("wait" as const), ms: FastCheck.constantFrom(1, 300, 999, 1000, 2500) })
)

/** Runs a schedule of call starts, call ends and waits through the pure machine, checking invariants at each step. */
const simulate = (steps: ReadonlyArray<Step>) => {
  let state = Breaker.initial
  let now = 0
  let consecutiveFailures = 0
  const running: Array<Breaker.Ticket> = []
  for (const s of steps) {
    const before = Breaker.current(state, now)
    if (s._tag === "wait") {
      now += s.ms
      continue
    }
    if (s._tag === "start") {
      const [ticket, next] = Breaker.admit(state, now, settings)
      // Closed admits everything; open admits nothing; half-open admits a bounded number of probes.
      if (before._tag === "Closed") expect(ticket).toBeDefined()
      if (before._tag === "Open") expect(ticket).toBeUndefined()
      if (ticket !== undefined) running.push(ticket)
      state = next
    } else {
      const ticket = running.splice(s.which % Math.max(1, running.length), 1)[0]
      if (ticket === undefined) continue
      const next = Breaker.settle(state, ticket, s.outcome, now, settings)
      const current = ticket.generation === before.generation
      if (before._tag === "Closed" && current) {
        consecutiveFailures = s.outcome === "failure"
          ? consecutiveFailures + 1
          : s.outcome === "success"
          ? 0
          : consecutiveFailures
        // Opens exactly when the threshold of consecutive failures is reached.
        expect(next._tag).toBe(consecutiveFailures >= settings.failureThreshold ? "Open" : "Closed")
      }
      if (before._tag === "HalfOpen" && current && s.outcome === "failure") expect(next._tag).toBe("Open")
      if (!current) expect(next).toEqual(before)
      state = next
    }
    const after = Breaker.current(state, now)
    if (after._tag !== "Closed") consecutiveFailures = 0
    if (after._tag === "HalfOpen") {
      expect(after.inFlight + after.successes).toBeLessThanOrEqual(settings.halfOpenProbes)
      const probesRunning = running.filter((t) => t.probe && t.generation === after.generation).length
      expect(probesRunning).toBe(after.inFlight)
    }
    if (after._tag === "Open") expect(after.until).toBeGreaterThan(now)
  }
}

describe("CircuitBreaker", () => {
  it.prop(
    "keeps its invariants for any schedule of calls, outcomes and waits",
    [FastCheck.array(step, { maxLength: 200 })],
    ([steps]) => simulate(steps),
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "closes after as many successful probes as it admits, from any number of failures",
    [FastCheck.integer({ min: 1, max: 10 }), FastCheck.integer({ min: 1, max: 5 })],
    ([threshold, probes]) => {
      const s: Breaker.BreakerSettings = { failureThreshold: threshold, openMs: 500, halfOpenProbes: probes }
      let state = Breaker.initial
      for (let i = 0; i < threshold; i++) {
        const [ticket, next] = Breaker.admit(state, 0, s)
        state = Breaker.settle(next, ticket!, "failure", 0, s)
      }
      expect(state._tag).toBe("Open")
      const tickets: Array<Breaker.Ticket> = []
      for (let i = 0; i < probes + 3; i++) {
        const [ticket, next] = Breaker.admit(state, 500, s)
        state = next
        if (ticket !== undefined) tickets.push(ticket)
      }
      expect(tickets).toHaveLength(probes)
      for (const ticket of tickets) state = Breaker.settle(state, ticket, "success", 501, s)
      expect(state._tag).toBe("Closed")
    }
  )

  it.effect("opens after consecutive failures, rejects without running, half-opens on the clock and closes", () =>
    Effect.gen(function*() {
      const transitions: Array<string> = []
      const breaker = yield* Breaker.make(settings, (_, to) => Effect.sync(() => transitions.push(to._tag)))
      let runs = 0
      const failing = Effect.suspend(() => {
        runs++
        return Effect.fail("boom" as const)
      })

      for (let i = 0; i < 3; i++) yield* Effect.either(breaker.run(failing))
      const rejected = yield* Effect.flip(breaker.run(failing))

      expect(runs).toBe(3)
      expect(rejected).toBeInstanceOf(Breaker.CircuitOpen)
      expect((yield* breaker.state)._tag).toBe("Open")

      yield* TestClock.adjust("1 second")
      const gates = [yield* Deferred.make<void>(), yield* Deferred.make<void>()]
      const probes = yield* Effect.forEach(gates, (gate) => Effect.fork(breaker.run(Deferred.await(gate))))
      yield* Effect.yieldNow()
      const third = yield* Effect.either(breaker.run(Effect.void))

      expect(Either.isLeft(third)).toBe(true)
      expect((yield* breaker.state)._tag).toBe("HalfOpen")

      yield* Effect.forEach(gates, (gate) => Deferred.succeed(gate, undefined))
      yield* Effect.forEach(probes, Fiber.join)

      expect((yield* breaker.state)._tag).toBe("Closed")
      expect(transitions).toEqual(["Open", "HalfOpen", "Closed"])
    }))

  it.effect("a failed probe opens it again for another period", () =>
    Effect.gen(function*() {
      const breaker = yield* Breaker.make({ failureThreshold: 1, openMs: 1000, halfOpenProbes: 1 })

      yield* Effect.either(breaker.run(Effect.fail("down")))
      yield* TestClock.adjust("1 second")
      yield* Effect.either(breaker.run(Effect.fail("still down")))

      expect((yield* breaker.state)._tag).toBe("Open")
      yield* TestClock.adjust("999 millis")
      expect((yield* breaker.state)._tag).toBe("Open")
      yield* TestClock.adjust("1 millis")
      expect((yield* breaker.state)._tag).toBe("HalfOpen")
    }))

  it.effect("counts only the failures it is told to, and frees an interrupted probe's slot", () =>
    Effect.gen(function*() {
      const breaker = yield* Breaker.make({ failureThreshold: 1, openMs: 1000, halfOpenProbes: 1 })

      yield* Effect.either(breaker.run(Effect.fail("client error"), () => false))
      expect((yield* breaker.state)._tag).toBe("Closed")

      yield* Effect.either(breaker.run(Effect.fail("server error")))
      yield* TestClock.adjust("1 second")
      const probe = yield* Effect.fork(breaker.run(Effect.never))
      yield* Effect.yieldNow()
      expect(Either.isLeft(yield* Effect.either(breaker.run(Effect.void)))).toBe(true)
      yield* Fiber.interrupt(probe)
      yield* breaker.run(Effect.void)

      expect((yield* breaker.state)._tag).toBe("Closed")
    }))
})
