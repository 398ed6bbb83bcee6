import { describe, expect, layer } from "@effect/vitest"
import { Effect, Random } from "effect"
import { eventually } from "../support/Eventually.js"
import {
  appendCrashMessages,
  crashEffectCount,
  crashEffects,
  deliveredEvents,
  leftovers,
  progressed,
  type QueueChild,
  QueueCrashLive,
  spawnQueueChild
} from "../support/QueueCrash.js"

const total = 2000
const kills = 4

describe("work queue under SIGKILL", () => {
  layer(QueueCrashLive, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.scoped("applies each message once and publishes each event once while workers are SIGKILLed at random", () =>
      Effect.gen(function*() {
        const ids = Array.from({ length: total }, (_, i) => `m-${String(i).padStart(4, "0")}`)
        let started = 0
        const start = (n: number) =>
          Effect.all(Array.from({ length: n }, () => spawnQueueChild(`worker-${++started}`)), { concurrency: n })
        // Kills come at random amounts of progress, early enough that work is left to interrupt.
        const killAt = (yield* Effect.forEach(
          Array.from({ length: kills }),
          () => Random.nextIntBetween(50, total * 0.7)
        )).sort((a, b) => a - b)
        yield* appendCrashMessages(ids)
        const children: Array<QueueChild> = yield* start(2)

        const victims: Array<string> = []
        for (const at of killAt) {
          // At least one more batch since the last kill, so that a restarted child is not killed idle.
          yield* progressed(crashEffectCount, Math.min(total, Math.max(at, (yield* crashEffectCount) + 32)))
          if ((yield* crashEffectCount) >= total) break
          // One child or both: with both gone, only lease expiry brings their jobs back.
          const pick = yield* Random.nextIntBetween(0, 3)
          const slots = pick === 2 ? [0, 1] : [pick]
          for (const slot of slots) {
            victims.push(`${children[slot].worker} at ${yield* crashEffectCount}`)
            yield* children[slot].kill
          }
          const restarted = yield* start(slots.length)
          slots.forEach((slot, i) => children[slot] = restarted[i])
        }
        yield* eventually(
          Effect.map(leftovers, (left) => left.crash_jobs === 0 && left.outbox === 0),
          6000,
          20
        )
        yield* Effect.forEach(children, (child) => child.kill, { discard: true })

        const effects = yield* crashEffects
        expect(victims.length).toBeGreaterThan(0)
        expect(effects.map((e) => e.message_id)).toEqual(ids)
        const events = yield* deliveredEvents
        expect(events.map((e) => e.message_id).sort()).toEqual(ids.map((id) => `out:${id}`))
        expect(events.every((e) => e.n === 1)).toBe(true)
        expect(yield* leftovers).toEqual({ leased: 0, crash_jobs: 0, inbox_claims: 0, outbox: 0, dead: 0 })

        const redelivered = effects.filter((e) => e.attempt > 1).length
        console.info(
          `SIGKILLed ${victims.length} times (${victims.join(", ")} effects), ${started} processes started, ` +
            `${redelivered} messages applied on a later attempt than their first`
        )
      }))
  })
})
