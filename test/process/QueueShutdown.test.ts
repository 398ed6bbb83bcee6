import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { eventually } from "../support/Eventually.js"
import {
  appendCrashMessages,
  crashEffects,
  crashJob,
  eventCopies,
  heldBy,
  leftovers,
  type QueueChild,
  QueueCrashLive,
  spawnQueueChild
} from "../support/QueueCrash.js"

// A lease far longer than the test waits: a job that another instance runs soon after a SIGTERM
// was released, not reclaimed after expiry.
const lease = { QUEUE_LEASE_MS: "60000" }

/** The child's exit, failing rather than hanging when it outlives its grace period by far. */
const exitAfterTerm = (child: QueueChild) =>
  child.exited.pipe(
    Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error(`${child.worker} ignored SIGTERM`) })
  )

const effectsOf = (messageId: string) =>
  Effect.map(crashEffects, (effects) => effects.filter((e) => e.message_id === messageId))

describe("work queue at SIGTERM", () => {
  layer(QueueCrashLive, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.scoped("lets a batch in flight finish within the grace period, then exits 0", () =>
      Effect.gen(function*() {
        const child = yield* spawnQueueChild("finishing", { ...lease, HOLD_MS: "1000", SHUTDOWN_GRACE_MS: "20000" })
        yield* appendCrashMessages(["s-1"])
        yield* child.printed((line) => line === "handling s-1")

        child.signal("SIGTERM")
        const code = yield* exitAfterTerm(child)

        expect(code).toBe(0)
        expect(child.lines.some((line) => line.includes("\"workers drained\""))).toBe(true)
        expect(yield* effectsOf("s-1")).toEqual([{ message_id: "s-1", worker: "finishing", attempt: 1 }])
        expect(yield* crashJob("s-1")).toBeUndefined()
        // Delivered by the relay before it stopped, or left in the outbox for the next instance.
        const copies = yield* eventCopies("out:s-1")
        expect(copies.pending + copies.delivered).toBe(1)
      }))

    it.scoped("releases a batch that outlives the grace period; another instance takes it at once", () =>
      Effect.gen(function*() {
        const first = yield* spawnQueueChild("first", { ...lease, HOLD_MS: "60000", SHUTDOWN_GRACE_MS: "500" })
        yield* appendCrashMessages(["r-1"])
        yield* first.printed((line) => line === "handling r-1")
        const held = yield* crashJob("r-1")

        first.signal("SIGTERM")
        const code = yield* exitAfterTerm(first)
        const released = yield* crashJob("r-1")
        const second = yield* spawnQueueChild("second", lease)
        yield* eventually(Effect.map(effectsOf("r-1"), (effects) => effects.length > 0), 1500, 20)
        yield* eventually(Effect.map(eventCopies("out:r-1"), (copies) => copies.delivered > 0), 1500, 20)
        yield* second.kill

        expect(heldBy(held.leased_by, first)).toBe(true)
        expect(held.attempts).toBe(1)
        expect(code).toBe(0)
        expect(first.lines.some((line) => line.includes("\"grace period over, releasing leases\""))).toBe(true)
        expect(released).toEqual({ leased_by: null, leased: false, token: held.token, attempts: 0 })
        expect(yield* effectsOf("r-1")).toEqual([{ message_id: "r-1", worker: "second", attempt: 1 }])
        expect(yield* eventCopies("out:r-1")).toEqual({ pending: 0, delivered: 1 })
        expect(yield* leftovers).toEqual({ leased: 0, crash_jobs: 0, inbox_claims: 0, outbox: 0, dead: 0 })
      }))
  })
})
