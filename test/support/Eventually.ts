import { Effect } from "effect"

const realPause = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/**
 * Waits in real time, whatever clock the test runs on, until `check` holds; dies after `attempts`
 * polls. For waiting on another process or a real server (a request arrived, a row appeared),
 * never for asserting how long something took.
 */
export const eventually = <E, R>(check: Effect.Effect<boolean, E, R>, attempts = 1000, pollMs = 10) =>
  Effect.gen(function*() {
    for (let i = 0; i < attempts; i++) {
      if (yield* check) return
      yield* realPause(pollMs)
    }
    return yield* Effect.dieMessage("condition not reached in time")
  })

/** Lets real I/O (a request in flight on loopback) progress without touching the test clock. */
export const settle = (ms = 50) => realPause(ms)
