import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { eventually } from "../support/Eventually.js"
import {
  appendCrashMessages,
  crashEffects,
  crashJob,
  deliveredEvents,
  heldBy,
  leftovers,
  QueueCrashLive,
  spawnQueueChild
} from "../support/QueueCrash.js"

// The handler holds its transaction open for less than a lease: the paused worker is within its
// lease when SIGSTOP arrives, and only the pause makes it overrun.
const settings = { QUEUE_LEASE_MS: "3000" }

describe("work queue with a paused worker", () => {
  layer(QueueCrashLive, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.scoped("refuses the late outcome of a worker paused past its lease; the job is done once by its new holder", () =>
      Effect.gen(function*() {
        const paused = yield* spawnQueueChild("paused", { ...settings, HOLD_MS: "2000" })
        yield* appendCrashMessages(["p-1"])
        yield* paused.printed((line) => line === "handling p-1")
        paused.signal("SIGSTOP")
        const before = yield* crashJob("p-1")

        const taker = yield* spawnQueueChild("taker", settings)
        yield* eventually(Effect.map(crashEffects, (effects) => effects.some((e) => e.worker === "taker")), 3000, 20)
        const after = yield* crashJob("p-1")
        paused.signal("SIGCONT")
        const lost = yield* paused.logged("lease lost, jobs left to their new holder")
        yield* eventually(Effect.map(deliveredEvents, (events) => events.length > 0), 3000, 20)
        // The resumed worker lives on: with the taker gone, it does the next message itself.
        yield* taker.kill
        yield* appendCrashMessages(["p-2"])
        yield* eventually(Effect.map(crashEffects, (effects) => effects.some((e) => e.message_id === "p-2")), 3000, 20)
        yield* eventually(Effect.map(deliveredEvents, (events) => events.length === 2), 3000, 20)
        yield* paused.kill

        expect(heldBy(before.leased_by, paused)).toBe(true)
        expect(before.attempts).toBe(1)
        expect(after).toBeUndefined()
        expect((lost.annotations as Record<string, unknown>).lost).toBe(1)
        expect(yield* crashEffects).toEqual([
          { message_id: "p-1", worker: "taker", attempt: 2 },
          { message_id: "p-2", worker: "paused", attempt: 1 }
        ])
        expect(yield* deliveredEvents).toEqual([{ message_id: "out:p-1", n: 1 }, { message_id: "out:p-2", n: 1 }])
        expect(yield* leftovers).toEqual({ leased: 0, crash_jobs: 0, inbox_claims: 0, outbox: 0, dead: 0 })
      }))
  })
})
