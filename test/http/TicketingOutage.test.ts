import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import { queueName } from "../../src/services/CheckInWriteBack.js"
import { ProviderSim } from "../../src/sim/ProviderSim.js"
import { eventually } from "../support/Eventually.js"
import { postScan, scanBody, type Scene, scene } from "../support/Gate.js"
import { request } from "../support/Http.js"
import { createDevice, createEvent, createVenue } from "../support/Identity.js"
import { adminKey } from "../support/Server.js"
import { inGallery, insertPerson, listTickets, mapEvent, syncNow, TicketingServerLive } from "../support/Ticketing.js"

// Server settings (TicketingServerLive): no retries, breaker opens after 3 failures for 30 s,
// half-open admits 2 probes, requests time out after 5 s of the test clock. The check-in
// write-back loop runs on the test clock too: its pauses end when a test moves the clock.

const readiness = Effect.map(
  request("GET", "/health/ready"),
  (r) => ({ status: r.status, ticketing: r.body?.components?.ticketing?.status })
)

/** The rest of the service answers while the provider is down: readiness, devices, admin, synced tickets. */
const serviceKeepsWorking = (venueId: string, eventId: string, deviceKey: string) =>
  Effect.gen(function*() {
    const ready = yield* readiness
    const whoami = yield* request("GET", "/v1/device", { key: deviceKey })
    const newEvent = yield* createEvent(venueId)
    const tickets = yield* request("GET", `/v1/events/${eventId}/tickets`, { key: deviceKey })
    return { ready, whoami: whoami.status, newEvent: newEvent.eventId !== undefined, tickets: tickets.status }
  })

/** Provider and Gatehouse agree: same tickets, same statuses, none lost or doubled. */
const expectCaughtUp = (eventId: string, slug: string) =>
  Effect.gen(function*() {
    const sim = yield* ProviderSim
    const tickets = yield* listTickets(eventId)
    const provider = [...sim.event(slug)!.positions.values()]
    const statusOf = { valid: "valid", canceled: "cancelled", refunded: "refunded", transferred: "transferred" }

    expect(tickets).toHaveLength(provider.length)
    expect(new Set(tickets.map((t) => t.providerTicketId)).size).toBe(provider.length)
    expect(
      Object.fromEntries(tickets.map((t) => [t.providerTicketId, [t.status, t.providerVersion]]))
    ).toEqual(Object.fromEntries(provider.map((p) => [p.id, [statusOf[p.status], p.version]])))
  })

/** Gate scans of already-synced tickets, by face and by ticket, one of them an offline upload. */
const admitDuringOutage = (s: Scene) => [
  postScan(s.gate, scanBody(s.eventId, { probe: s.holders[0]!.face })),
  postScan(s.gate, scanBody(s.eventId, { probe: s.holders[1]!.face })),
  postScan(s.gate, scanBody(s.eventId, { ticket: s.spare[0]! })),
  postScan(s.gate, scanBody(s.eventId, { ticket: s.spare[1]! }, { offline: true }))
]

/** The write-backs waiting in the queue: their attempts, and the dead letters among them. */
const waitingWriteBacks = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const jobs = yield* sql<{ attempts: number }>`SELECT attempts FROM jobs WHERE queue = ${queueName}`
  const dead = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM dead_letters WHERE queue = ${queueName}`
  return { queued: jobs.length, attempts: jobs.map((j) => j.attempts), dead: dead[0]!.n }
}).pipe(Effect.orDie)

/** The simulator's check-ins of these scans: how many requests reached it per nonce. */
const requestsPerNonce = (gate: { readonly deviceId: string }, nonces: ReadonlyArray<string>) =>
  Effect.flatMap(ProviderSim, (sim) =>
    Effect.sync(() => {
      const byNonce = new Map(sim.checkinsFor().map((c) => [c.nonce, c.requests]))
      return nonces.map((n) => byNonce.get(`gatehouse:${gate.deviceId}:${n}`) ?? 0)
    }))

/** Moves the test clock on until `check` holds: the write-back loop's pauses and the breaker run on it. */
const advanceUntil = (check: Effect.Effect<boolean, never, any>) =>
  eventually(Effect.zipRight(TestClock.adjust("1 second"), check), 400)

describe("ticketing provider outage", () => {
  it.layer(TicketingServerLive())((it) => {
    it.effect("refusing connections: the breaker opens, everything else works, then it probes, closes and sync catches up", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const { venueId } = yield* createVenue()
        const device = yield* createDevice(venueId)
        // The main event spans pages; the three small ones fit one page, so one probe is one whole sync.
        const events = yield* Effect.forEach(
          ["down-main", "down-a", "down-b", "down-c"],
          (slug, i) =>
            Effect.gen(function*() {
              const { eventId } = yield* createEvent(venueId)
              sim.addEvent({ slug })
              for (let j = 0; j < (i === 0 ? 15 : 5); j++) sim.addTicket(slug)
              return { eventId, slug }
            })
        )
        const [main, ...small] = events as [typeof events[0], ...typeof events]
        const holder = yield* insertPerson(venueId, "cust-holder")
        const held = sim.addTicket(main.slug, { holderReference: "cust-holder" })
        yield* Effect.forEach(events, ({ eventId, slug }) => mapEvent(eventId, slug))
        const linkedBefore = yield* inGallery(main.eventId, holder)

        yield* Effect.promise(() => sim.setFault({ fault: { type: "refuse" } }))
        const failures = yield* Effect.forEach([1, 2, 3], () => syncNow(main.eventId))
        const fast = yield* syncNow(main.eventId)
        const during = yield* serviceKeepsWorking(venueId, main.eventId, device.key)
        const metrics = yield* request("GET", "/metrics")
        const mapping = yield* request("GET", `/v1/admin/events/${main.eventId}/provider`, { key: adminKey })
        // The provider changes while Gatehouse cannot see it.
        for (let i = 0; i < 7; i++) sim.addTicket(main.slug)
        sim.cancel(held.id)

        expect(linkedBefore).toBe(true)
        expect(failures.map((r) => [r.status, r.body.code, r.body.circuitOpen])).toEqual([
          [503, "ProviderUnavailable", false],
          [503, "ProviderUnavailable", false],
          [503, "ProviderUnavailable", false]
        ])
        expect(failures[0]!.body.detail).toContain("ECONNREFUSED")
        expect(fast.status).toBe(503)
        expect(fast.body.circuitOpen).toBe(true)
        expect(during).toEqual({
          ready: { status: 200, ticketing: "degraded" },
          whoami: 200,
          newEvent: true,
          tickets: 200
        })
        expect(metrics.text).toMatch(/gatehouse_ticket_provider_breaker_state(\{[^}]*\})? 2/)
        expect(mapping.body).toMatchObject({ breaker: "open" })
        expect(mapping.body.lastError).toContain("circuit open")

        // Recovery: after the open period, two probes pass and a third caller is turned away.
        yield* Effect.promise(() => sim.clearFault())
        sim.setLatency(500)
        sim.resetCalls()
        yield* TestClock.adjust("30 seconds")
        const probing = yield* Effect.all(small.map(({ eventId }) => syncNow(eventId)), { concurrency: "unbounded" })
        sim.setLatency(0)

        expect(probing.filter((r) => r.status === 200)).toHaveLength(2)
        expect(probing.filter((r) => r.status === 503 && r.body.circuitOpen)).toHaveLength(1)
        expect(sim.calls().orderpositions).toBe(2)
        expect((yield* readiness).ticketing).toBe("up")

        const catchUp = yield* syncNow(main.eventId)
        yield* Effect.forEach(events, ({ eventId }) => syncNow(eventId))

        expect(catchUp.status).toBe(200)
        yield* Effect.forEach(events, ({ eventId, slug }) => expectCaughtUp(eventId, slug))
        expect(yield* inGallery(main.eventId, holder)).toBe(false)
      }))

    it.effect("hanging: requests time out, the breaker opens and fails fast, then closes when the provider answers", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const { venueId } = yield* createVenue()
        const device = yield* createDevice(venueId)
        const { eventId } = yield* createEvent(venueId)
        sim.addEvent({ slug: "hang" })
        for (let i = 0; i < 12; i++) sim.addTicket("hang")
        yield* mapEvent(eventId, "hang")

        yield* Effect.promise(() => sim.setFault({ fault: { type: "hang" } }))
        sim.resetCalls()
        const timeouts = []
        for (let i = 1; i <= 3; i++) {
          const pending = yield* Effect.fork(syncNow(eventId))
          yield* eventually(Effect.sync(() => sim.calls().orderpositions === i))
          yield* TestClock.adjust("5 seconds")
          timeouts.push(yield* Fiber.join(pending))
        }
        const fast = yield* syncNow(eventId)
        const during = yield* serviceKeepsWorking(venueId, eventId, device.key)
        const callsWhileOpen = sim.calls().orderpositions
        for (let i = 0; i < 4; i++) sim.addTicket("hang")

        expect(timeouts.map((r) => [r.status, r.body.detail])).toEqual(
          Array.from({ length: 3 }, () => [503, "no answer within 5000 ms"])
        )
        expect(fast.body.circuitOpen).toBe(true)
        expect(callsWhileOpen).toBe(3)
        expect(during).toEqual({
          ready: { status: 200, ticketing: "degraded" },
          whoami: 200,
          newEvent: true,
          tickets: 200
        })

        yield* Effect.promise(() => sim.clearFault())
        yield* TestClock.adjust("30 seconds")
        const recovered = yield* syncNow(eventId)

        expect(recovered.status).toBe(200)
        expect((yield* readiness).ticketing).toBe("up")
        yield* expectCaughtUp(eventId, "hang")
      }))

    it.effect("refusing connections: synced tickets are admitted by face and ticket, write-backs wait uncounted, then arrive once each", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const s = yield* scene({ holders: 2, spare: 2 })

        yield* Effect.promise(() => sim.setFault({ fault: { type: "refuse" } }))
        const admitted = yield* Effect.all(admitDuringOutage(s))
        const nonces = admitted.map((r) => r.body.nonce as string)
        yield* advanceUntil(Effect.map(readiness, (r) => r.ticketing === "degraded"))
        yield* eventually(Effect.map(waitingWriteBacks, (w) => w.queued === 4))
        const during = yield* waitingWriteBacks
        const delivered = yield* requestsPerNonce(s.gate, nonces)
        // Later scans are not slowed or refused by the open breaker either.
        const meanwhile = yield* postScan(s.gate, scanBody(s.eventId, { ticket: s.spare[0]! }, { direction: "exit" }))

        expect(admitted.map((r) => [r.status, r.body.decision])).toEqual(
          Array.from({ length: 4 }, () => [200, "granted"])
        )
        expect(meanwhile.body.decision).toBe("granted")
        expect(during).toEqual({ queued: 4, attempts: [0, 0, 0, 0], dead: 0 })
        expect(delivered).toEqual([0, 0, 0, 0])

        yield* Effect.promise(() => sim.clearFault())
        yield* advanceUntil(Effect.map(
          requestsPerNonce(s.gate, [...nonces, meanwhile.body.nonce]),
          (n) => n.every((r) => r > 0)
        ))
        yield* eventually(Effect.map(waitingWriteBacks, (w) => w.queued === 0))

        expect(yield* requestsPerNonce(s.gate, [...nonces, meanwhile.body.nonce])).toEqual([1, 1, 1, 1, 1])
        expect((yield* waitingWriteBacks).dead).toBe(0)
        expect((yield* readiness).ticketing).toBe("up")
      }))

    it.effect("hanging: the gate answers while write-backs hang at the provider, and they arrive once each after it recovers", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const s = yield* scene({ holders: 2, spare: 2 })
        const [first, ...rest] = admitDuringOutage(s)

        yield* Effect.promise(() => sim.setFault({ fault: { type: "hang" } }))
        const opening = yield* first!
        yield* eventually(Effect.sync(() => sim.hanging() >= 1))
        const answeredWhileHanging = yield* Effect.all(rest)
        const hangingThen = sim.hanging()
        const admitted = [opening, ...answeredWhileHanging]
        const nonces = admitted.map((r) => r.body.nonce as string)
        yield* advanceUntil(Effect.map(readiness, (r) => r.ticketing === "degraded"))
        const during = yield* waitingWriteBacks

        expect(admitted.map((r) => [r.status, r.body.decision])).toEqual(
          Array.from({ length: 4 }, () => [200, "granted"])
        )
        expect(hangingThen).toBeGreaterThanOrEqual(1)
        expect(during).toMatchObject({ queued: 4, dead: 0 })
        expect(yield* requestsPerNonce(s.gate, nonces)).toEqual([0, 0, 0, 0])

        yield* Effect.promise(() => sim.clearFault())
        yield* advanceUntil(Effect.map(requestsPerNonce(s.gate, nonces), (n) => n.every((r) => r > 0)))
        yield* eventually(Effect.map(waitingWriteBacks, (w) => w.queued === 0))

        expect(yield* requestsPerNonce(s.gate, nonces)).toEqual([1, 1, 1, 1])
        expect((yield* waitingWriteBacks).dead).toBe(0)
        expect((yield* readiness).ticketing).toBe("up")
      }))
  })
})
