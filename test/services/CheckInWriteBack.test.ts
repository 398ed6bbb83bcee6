import { NodeHttpClient } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Layer, Option, Redacted } from "effect"
import * as Crypto from "node:crypto"
import { AppConfig } from "../../src/layers/Config.js"
import { Admission, CheckInSink } from "../../src/services/Admissions.js"
import { Audit } from "../../src/services/Audit.js"
import {
  type CheckedIn,
  CheckInWriteBack,
  queueName,
  topic,
  type WriteBackOptions
} from "../../src/services/CheckInWriteBack.js"
import { Inbox } from "../../src/services/Inbox.js"
import { Queue } from "../../src/services/Queue.js"
import * as TicketProvider from "../../src/services/TicketProvider.js"
import { Tickets } from "../../src/services/Tickets.js"
import { ProviderSim } from "../../src/sim/ProviderSim.js"
import { insertVenueWithEvent } from "../support/Database.js"
import { settle } from "../support/Eventually.js"
import { MessagingTestLive } from "../support/Messaging.js"
import { providerSettings, simToken } from "../support/Provider.js"

const TestLive = Layer.mergeAll(
  Tickets.layer.pipe(Layer.provide(Audit.layer)),
  ProviderSim.layer({ token: simToken, events: 0 }),
  NodeHttpClient.layer
).pipe(Layer.provideMerge(MessagingTestLive()))

const options: WriteBackOptions = {
  batchSize: 10,
  leaseMs: 5_000,
  pollIntervalMs: 100,
  maxAttempts: 2,
  backoff: { baseMs: 1, maxMs: 5 },
  pauseMaxMs: 100,
  concurrency: 2,
  owner: "test-writeback"
}

/** A write-back round runner on a fresh client of the simulator (healthy, counters zeroed). */
const writeBack = (overrides: Partial<TicketProvider.TicketProviderSettings> = {}) =>
  Effect.gen(function*() {
    const sim = yield* ProviderSim
    yield* Effect.promise(() => sim.clearFault())
    const provider = yield* TicketProvider.make(providerSettings(sim, overrides))
    return yield* CheckInWriteBack.make(options).pipe(Effect.provideService(TicketProvider.TicketProvider, provider))
  })

/** A synced ticket of a fresh event; `known: false` gives it a secret the provider has never issued. */
const syncedTicket = (known = true) =>
  Effect.gen(function*() {
    const sim = yield* ProviderSim
    const tickets = yield* Tickets
    const { eventId } = yield* insertVenueWithEvent()
    const slug = `wb-${eventId.slice(0, 8)}`
    sim.addEvent({ slug })
    const position = sim.addTicket(slug)
    const secret = known ? position.secret : `UNKNOWN-${Crypto.randomUUID()}`
    yield* tickets.apply(eventId, slug, [{
      providerId: position.id,
      order: position.order,
      secret,
      holderReference: null,
      status: "valid",
      modified: new Date(position.last_modified),
      version: position.version
    }])
    const ticket = (yield* tickets.list(eventId))[0]!
    return { ticketId: ticket.ticketId, secret }
  }).pipe(Effect.orDie)

/** Queues one write-back of the ticket, as the relay would from the admission's outbox event. */
const queueWriteBack = (
  ticketId: string,
  copyOf?: { readonly messageId: string; readonly payload: CheckedIn }
) =>
  Effect.gen(function*() {
    const queue = yield* Queue
    const messageId = copyOf?.messageId ?? `checkin:${Crypto.randomUUID()}`
    const payload: CheckedIn = copyOf?.payload ?? {
      admissionId: 1,
      ticketId,
      nonce: `gatehouse:${Crypto.randomUUID()}`,
      direction: "entry",
      at: "2024-06-01T19:00:00.000Z"
    }
    yield* queue.enqueue([{ queue: queueName, topic, payload, messageId }])
    return { messageId, payload }
  }).pipe(Effect.orDie)

const jobsOf = (messageId: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => sql<{ attempts: number }>`SELECT attempts FROM jobs WHERE message_id = ${messageId}`
  ).pipe(Effect.orDie)

const gateDevice = Crypto.randomUUID()

const admission = (ticketId: string | null) =>
  new Admission({
    admissionId: 42,
    deviceId: gateDevice,
    nonce: "n-1",
    eventId: Crypto.randomUUID(),
    gate: "north",
    direction: "entry",
    method: "ticket",
    ticketId,
    personId: null,
    score: null,
    threshold: null,
    modelId: null,
    decision: "granted",
    reason: null,
    flagged: null,
    offline: true,
    deviceTime: new Date("2024-06-01T18:59:00Z"),
    serverTime: new Date("2024-06-01T19:00:00Z")
  })

describe("CheckInWriteBack", () => {
  layer(TestLive, { excludeTestServices: true })((it) => {
    it.effect("writes a check-in back once, and sends no copy of a delivered message again", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const inbox = yield* Inbox
        const rounds = yield* writeBack()
        const { ticketId, secret } = yield* syncedTicket()
        const { messageId, payload } = yield* queueWriteBack(ticketId)

        const first = yield* rounds.runOnce
        yield* queueWriteBack(ticketId, { messageId, payload })
        const copy = yield* rounds.runOnce
        yield* queueWriteBack(ticketId, { messageId, payload: { ...payload, direction: "exit" } })
        const impostor = yield* rounds.runOnce

        expect(first).toMatchObject({ claimed: 1, delivered: 1, postponed: 0 })
        expect(copy).toMatchObject({ claimed: 1, delivered: 1 })
        expect(impostor).toMatchObject({ claimed: 1, delivered: 0, parked: 1 })
        expect(sim.checkinsFor(secret)).toEqual([
          expect.objectContaining({
            nonce: payload.nonce,
            type: "entry",
            datetime: payload.at,
            status: 201,
            requests: 1
          })
        ])
        expect(yield* jobsOf(messageId)).toEqual([])
        expect(Option.map(yield* inbox.lookup(queueName, messageId), (m) => m.status)).toEqual(Option.some("succeeded"))
      }))

    it.effect("hands write-backs back uncounted while the provider is unreachable, for as many rounds as it takes", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const sql = yield* SqlClient.SqlClient
        const rounds = yield* writeBack()
        const { ticketId, secret } = yield* syncedTicket()
        const { messageId } = yield* queueWriteBack(ticketId)
        yield* Effect.promise(() => sim.setFault({ fault: { type: "refuse" } }))

        const during = yield* Effect.forEach(Array.from({ length: 2 * options.maxAttempts + 1 }), () => rounds.runOnce)
        const waiting = yield* jobsOf(messageId)
        const parked = yield* sql<
          { n: number }
        >`SELECT count(*)::int AS n FROM dead_letters WHERE message_id = ${messageId}`
        yield* Effect.promise(() => sim.clearFault())
        const after = yield* rounds.runOnce

        expect(during.every((r) => r.claimed === 1 && r.postponed === 1)).toBe(true)
        expect(waiting).toEqual([{ attempts: 0 }])
        expect(parked[0]!.n).toBe(0)
        expect(after).toMatchObject({ delivered: 1 })
        expect(sim.checkinsFor(secret).map((c) => c.requests)).toEqual([1])
      }))

    it.effect("retries a write-back the provider refuses with backoff, then parks it with the provider's answer", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const rounds = yield* writeBack({ token: Option.some(Redacted.make("wrong-token")) })
        const { ticketId } = yield* syncedTicket()
        const { messageId } = yield* queueWriteBack(ticketId)

        const first = yield* rounds.runOnce
        // The retry is due a few milliseconds later (backoff 1 to 5 ms).
        let second = yield* rounds.runOnce
        for (let i = 0; second.claimed === 0 && i < 200; i++) {
          yield* settle(5)
          second = yield* rounds.runOnce
        }
        const [dead] = yield* sql<{ queue: string; last_error: string; attempts: number }>`
          SELECT queue, last_error, attempts FROM dead_letters WHERE message_id = ${messageId}
        `

        expect(first).toMatchObject({ claimed: 1, retried: 1, parked: 0 })
        expect(second).toMatchObject({ claimed: 1, retried: 0, parked: 1 })
        expect(dead).toMatchObject({ queue: queueName, attempts: 2 })
        expect(dead!.last_error).toContain("401")
        expect(yield* jobsOf(messageId)).toEqual([])
      }))

    it.effect("records a check-in the provider declines and does not send it again", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const sim = yield* ProviderSim
        const rounds = yield* writeBack()
        const { ticketId, secret } = yield* syncedTicket(false)
        const { messageId } = yield* queueWriteBack(ticketId)

        const round = yield* rounds.runOnce

        expect(round).toMatchObject({ delivered: 1, retried: 0, parked: 0 })
        expect(sim.checkinsFor(secret).map((c) => c.status)).toEqual([404])
        expect(Option.map(yield* inbox.lookup(queueName, messageId), (m) => m.status)).toEqual(Option.some("succeeded"))
      }))

    it.effect("appends a check-in event without the ticket's secret, and none without a provider", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const record = (configured: boolean, ticketId: string | null) =>
          Effect.flatMap(CheckInSink, (sink) => sql.withTransaction(sink.recorded(admission(ticketId)))).pipe(
            Effect.provide(CheckInWriteBack.sink.pipe(Layer.provide(AppConfig.make({
              ticketProviderUrl: configured ? Option.some(new URL("http://127.0.0.1:9/")) : Option.none()
            }))))
          )
        const { ticketId, secret } = yield* syncedTicket()
        yield* sql`DELETE FROM outbox`

        yield* record(false, ticketId)
        const unconfigured = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox`
        yield* record(true, null)
        yield* record(true, ticketId)
        const rows = yield* sql<{ topic: string; payload: any; message_id: string }>`
          SELECT topic, payload, message_id FROM outbox
        `
        const subscribed = yield* sql`SELECT 1 FROM queue_subscriptions WHERE topic = ${topic} AND queue = ${queueName}`

        expect(unconfigured[0]!.n).toBe(0)
        expect(rows).toEqual([{
          topic,
          message_id: "checkin:42",
          payload: {
            admissionId: 42,
            ticketId,
            nonce: `gatehouse:${gateDevice}:n-1`,
            direction: "entry",
            at: "2024-06-01T18:59:00.000Z"
          }
        }])
        expect(JSON.stringify(rows)).not.toContain(secret)
        expect(subscribed).toHaveLength(1)
      }))
  })
})
