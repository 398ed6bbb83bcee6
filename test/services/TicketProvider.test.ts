import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Option, Redacted, TestClock } from "effect"
import { Health } from "../../src/services/Health.js"
import * as TicketProvider from "../../src/services/TicketProvider.js"
import { ProviderSim } from "../../src/sim/ProviderSim.js"
import { eventually, settle } from "../support/Eventually.js"
import { providerSettings, simToken } from "../support/Provider.js"

const TestLive = Layer.mergeAll(
  ProviderSim.layer({ token: simToken, events: 2, ticketsPerEvent: 25, seed: 7 }),
  Health.layer,
  NodeHttpClient.layer
)

/** A fresh client (and breaker) on the shared simulator, which starts healthy with zeroed counters. */
const client = (overrides: Partial<TicketProvider.TicketProviderSettings> = {}) =>
  Effect.gen(function*() {
    const sim = yield* ProviderSim
    yield* Effect.promise(() => sim.clearFault())
    sim.resetCalls()
    const provider = yield* TicketProvider.make(providerSettings(sim, overrides))
    return { sim, provider }
  })

/** Milliseconds from now to the earliest pending retry sleep (request timeouts are set far away). */
const nextRetryDelay = Effect.gen(function*() {
  const now = yield* TestClock.currentTimeMillis
  const pending = Chunk.toReadonlyArray(yield* TestClock.sleeps()).map((at) => at - now).filter((d) =>
    d > 0 && d < 100_000
  )
  return pending.length === 0 ? undefined : Math.min(...pending)
})

describe("TicketProvider", () => {
  it.layer(TestLive)((it) => {
    it.effect("reads events and walks every page of an event's tickets changed since a time", () =>
      Effect.gen(function*() {
        const { provider } = yield* client()

        const events = yield* provider.events
        const first = yield* provider.tickets("event-1", {})
        const second = yield* provider.tickets("event-1", { pageUrl: first.next })
        const since = yield* provider.tickets("event-1", { modifiedSince: first.tickets[4]!.modified })

        expect(events.map((e) => e.slug)).toEqual(["event-1", "event-2"])
        expect(first.count).toBe(25)
        expect(first.tickets).toHaveLength(10)
        expect(second.tickets[0]!.providerId).toBe(first.tickets[9]!.providerId + 1)
        expect(since.count).toBe(21)
        expect(since.tickets[0]).toEqual(first.tickets[4])
      }))

    it.effect("answers a bad token or an unknown event with a typed rejection that leaves the breaker closed", () =>
      Effect.gen(function*() {
        const { sim } = yield* client()
        const wrongToken = yield* TicketProvider.make(
          providerSettings(sim, {
            token: Option.some(Redacted.make("wrong")),
            breaker: { failureThreshold: 1, openMs: 1000, halfOpenProbes: 1 }
          })
        )

        const unauthorized = yield* Effect.flip(wrongToken.events)
        const unknown = yield* Effect.flip(wrongToken.event("no-such-event"))

        expect(unauthorized).toMatchObject({ _tag: "ProviderRejected", status: 401 })
        expect(unknown).toMatchObject({ _tag: "ProviderRejected" })
        expect((yield* wrongToken.breakerState)._tag).toBe("Closed")
      }))

    it.effect("turns malformed JSON and a body of the wrong shape into typed errors that the breaker counts", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client({ breaker: { failureThreshold: 2, openMs: 1000, halfOpenProbes: 1 } })
        const health = yield* Health

        yield* Effect.promise(() => sim.setFault({ fault: { type: "malformed" }, times: 1 }))
        const truncated = yield* Effect.flip(provider.tickets("event-1", {}))
        yield* Effect.promise(() => sim.setFault({ fault: { type: "malformed", variant: "shape" }, times: 1 }))
        const shape = yield* Effect.flip(provider.tickets("event-1", {}))

        expect(truncated).toMatchObject({
          _tag: "ProviderResponseMalformed",
          detail: "the provider's answer is not valid JSON"
        })
        expect(shape._tag).toBe("ProviderResponseMalformed")
        expect((yield* provider.breakerState)._tag).toBe("Open")
        expect((yield* health.snapshot).ticketing?.status).toBe("degraded")
      }))

    it.effect("spreads retries out with exponential backoff and jitter, then gives up unavailable", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client({ retries: 3, retryBaseMs: 100 })
        yield* Effect.promise(() => sim.setFault({ fault: { type: "error", status: 503 } }))

        const call = yield* Effect.fork(Effect.flip(provider.tickets("event-1", {})))
        const delays: Array<number> = []
        for (let attempt = 1; attempt <= 3; attempt++) {
          yield* eventually(
            Effect.map(nextRetryDelay, (d) => d !== undefined && sim.calls().orderpositions === attempt)
          )
          const delay = (yield* nextRetryDelay)!
          delays.push(delay)
          yield* TestClock.adjust(delay)
        }
        const error = yield* Fiber.join(call)

        expect(sim.calls().orderpositions).toBe(4)
        expect(error).toMatchObject({ _tag: "ProviderUnavailable", circuitOpen: false })
        delays.forEach((delay, i) => {
          expect(delay).toBeGreaterThanOrEqual(0.8 * 100 * 2 ** i)
          expect(delay).toBeLessThanOrEqual(1.2 * 100 * 2 ** i)
        })
      }))

    it.effect("waits at least the provider's Retry-After before the next attempt", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client({ retries: 2, retryBaseMs: 100 })
        yield* Effect.promise(() => sim.setFault({ fault: { type: "rateLimit", retryAfterSeconds: 3 }, times: 1 }))

        const call = yield* Effect.fork(provider.tickets("event-1", {}))
        yield* eventually(Effect.map(nextRetryDelay, (d) => d !== undefined))
        const delay = (yield* nextRetryDelay)!
        yield* TestClock.adjust(delay - 1)
        yield* settle()
        const callsBefore = sim.calls().orderpositions
        yield* TestClock.adjust(1)
        const page = yield* Fiber.join(call)

        expect(delay).toBeGreaterThanOrEqual(3000)
        expect(callsBefore).toBe(1)
        expect(sim.calls().orderpositions).toBe(2)
        expect(page.tickets).toHaveLength(10)
      }))

    it.effect("gives up at once as rate limited when Retry-After exceeds what a call may wait", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client({ retries: 3, retryAfterMaxMs: 1000 })
        yield* Effect.promise(() => sim.setFault({ fault: { type: "rateLimit", retryAfterSeconds: 120 } }))

        const error = yield* Effect.flip(provider.tickets("event-1", {}))

        expect(error).toMatchObject({ _tag: "ProviderRateLimited", retryAfterMs: 120_000 })
        expect(sim.calls().orderpositions).toBe(1)
        expect((yield* provider.breakerState)._tag).toBe("Closed")
      }))

    it.effect("times out a hanging provider as unavailable and counts it against the breaker", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client({
          timeoutMs: 5000,
          breaker: { failureThreshold: 1, openMs: 1000, halfOpenProbes: 1 }
        })
        yield* Effect.promise(() => sim.setFault({ fault: { type: "hang" } }))

        const call = yield* Effect.fork(Effect.flip(provider.tickets("event-1", {})))
        yield* eventually(Effect.sync(() => sim.hanging() === 1))
        yield* TestClock.adjust("5 seconds")
        const error = yield* Fiber.join(call)

        expect(error).toMatchObject({ _tag: "ProviderUnavailable", detail: "no answer within 5000 ms" })
        expect((yield* provider.breakerState)._tag).toBe("Open")
      }))

    it.effect("reports refused and reset connections as unavailable", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client()

        yield* Effect.promise(() => sim.setFault({ fault: { type: "reset" }, times: 1 }))
        const reset = yield* Effect.flip(provider.events)
        yield* Effect.promise(() => sim.setFault({ fault: { type: "refuse" } }))
        const refused = yield* Effect.flip(provider.events)

        expect(reset._tag).toBe("ProviderUnavailable")
        expect(refused).toMatchObject({ _tag: "ProviderUnavailable" })
        expect(refused.detail).toContain("ECONNREFUSED")
      }))

    it.effect("opens after failures and fails fast, half-opens with bounded probes and closes on recovery", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client({ breaker: { failureThreshold: 2, openMs: 1000, halfOpenProbes: 2 } })
        const health = yield* Health
        yield* Effect.promise(() => sim.setFault({ fault: { type: "error", status: 502 } }))

        yield* Effect.flip(provider.tickets("event-1", {}))
        yield* Effect.flip(provider.tickets("event-1", {}))
        const fast = yield* Effect.flip(provider.tickets("event-1", {}))

        expect(fast).toMatchObject({ _tag: "ProviderUnavailable", circuitOpen: true })
        expect(sim.calls().orderpositions).toBe(2)
        expect((yield* health.snapshot).ticketing?.status).toBe("degraded")

        yield* Effect.promise(() => sim.clearFault())
        sim.setLatency(300)
        yield* TestClock.adjust("1 second")
        const results = yield* Effect.all(
          Array.from({ length: 3 }, () => Effect.either(provider.tickets("event-1", {}))),
          { concurrency: "unbounded" }
        )

        expect(results.filter((r) => r._tag === "Right")).toHaveLength(2)
        expect(results.filter((r) => r._tag === "Left" && r.left._tag === "ProviderUnavailable" && r.left.circuitOpen))
          .toHaveLength(1)
        expect(sim.calls().orderpositions).toBe(4)
        expect((yield* provider.breakerState)._tag).toBe("Closed")
        expect((yield* health.snapshot).ticketing?.status).toBe("up")
      }))

    it.effect("keeps at most the configured number of requests in flight", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client({ concurrency: 2 })
        sim.setLatency(100)

        yield* Effect.all(Array.from({ length: 6 }, () => provider.event("event-1")), { concurrency: "unbounded" })

        expect(sim.calls().event).toBe(6)
        expect(sim.peakInFlight()).toBe(2)
      }))

    it.effect("writes check-ins back idempotently by nonce and reports declined ones", () =>
      Effect.gen(function*() {
        const { provider, sim } = yield* client()
        const ticket = sim.event("event-2")!.positions.values().next().value!
        const checkin = { secret: ticket.secret, nonce: "scan-1", type: "entry" as const, datetime: new Date() }

        const first = yield* provider.checkin(checkin)
        const again = yield* provider.checkin(checkin)
        const unknown = yield* provider.checkin({ ...checkin, nonce: "scan-2", secret: "nope" })

        expect(first).toEqual({ _tag: "Recorded" })
        expect(again).toEqual({ _tag: "Recorded" })
        expect(unknown).toEqual({ _tag: "Declined", reason: "invalid" })
        expect(sim.checkinsFor(ticket.secret)).toHaveLength(1)
      }))
  })
})
