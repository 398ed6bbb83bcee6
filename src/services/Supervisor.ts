import { Cause, Effect, type Scope } from "effect"
import { supervisorRestart } from "../layers/Schedules.js"
import type { ComponentStatus } from "./Health.js"
import { Health } from "./Health.js"

/**
 * Runs a background loop for the life of the scope. A failure or defect is logged with its whole
 * cause, the component is reported down, and the loop restarts on the supervisor schedule; the
 * schedule resets once the loop has run for a while. Interruption (shutdown) ends it quietly.
 */
export const supervised = <E, R>(
  component: string,
  loop: Effect.Effect<unknown, E, R>
): Effect.Effect<void, never, R | Health | Scope.Scope> =>
  Effect.gen(function*() {
    const health = yield* Health
    const report = (status: ComponentStatus, detail?: string) => health.set(component, status, detail)

    const attempt = Effect.zipRight(report("up"), loop).pipe(
      Effect.zipRight(Effect.dieMessage("loop ended")),
      Effect.catchAllCause((cause): Effect.Effect<never, "restart"> =>
        Cause.isInterruptedOnly(cause) ? Effect.interrupt : Effect.zipRight(
          Effect.logError("background loop failed, restarting", cause).pipe(Effect.annotateLogs({ component })),
          Effect.zipRight(report("down", Cause.pretty(cause).split("\n")[0]), Effect.fail("restart" as const))
        )
      )
    )

    yield* report("starting")
    yield* attempt.pipe(Effect.retry(supervisorRestart), Effect.ignore, Effect.forkScoped)
  })
