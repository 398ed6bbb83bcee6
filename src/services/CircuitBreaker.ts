import { Cause, Clock, Data, Effect, Exit, Option, SynchronizedRef } from "effect"

/**
 * A circuit breaker: closed (calls pass, consecutive failures counted), open (calls fail at once
 * until the open period ends), half-open (at most `halfOpenProbes` calls pass as probes; as many
 * successes close it, one failure opens it again). The state machine is the pure `admit` and
 * `settle` below; `make` runs it in a `SynchronizedRef` on the Effect clock, so tests walk it
 * with `TestClock`.
 */

export type BreakerState =
  | { readonly _tag: "Closed"; readonly generation: number; readonly failures: number }
  | { readonly _tag: "Open"; readonly generation: number; readonly until: number }
  | {
    readonly _tag: "HalfOpen"
    readonly generation: number
    /** Probes admitted and not yet settled. */
    readonly inFlight: number
    /** Probes that succeeded. */
    readonly successes: number
  }

export interface BreakerSettings {
  /** Consecutive failures that open a closed breaker. */
  readonly failureThreshold: number
  /** Milliseconds an open breaker rejects calls before it lets probes through. */
  readonly openMs: number
  /** Probes admitted at once in half-open, and successes needed to close. */
  readonly halfOpenProbes: number
}

/** What a caller holds while its call runs: which state admitted it. */
export interface Ticket {
  readonly generation: number
  readonly probe: boolean
}

export type Outcome = "success" | "failure" | "neutral"

export const initial: BreakerState = { _tag: "Closed", generation: 0, failures: 0 }

/** The state a reader should see at `now`: an open breaker whose period ended is half-open. */
export const current = (state: BreakerState, now: number): BreakerState =>
  state._tag === "Open" && now >= state.until
    ? { _tag: "HalfOpen", generation: state.generation + 1, inFlight: 0, successes: 0 }
    : state

/** Whether a call may start at `now`, and the state after it starts. */
export const admit = (
  state: BreakerState,
  now: number,
  settings: BreakerSettings
): readonly [ticket: Ticket | undefined, next: BreakerState] => {
  const s = current(state, now)
  switch (s._tag) {
    case "Closed":
      return [{ generation: s.generation, probe: false }, s]
    case "Open":
      return [undefined, s]
    case "HalfOpen":
      return s.inFlight + s.successes < settings.halfOpenProbes
        ? [{ generation: s.generation, probe: true }, { ...s, inFlight: s.inFlight + 1 }]
        : [undefined, s]
  }
}

/**
 * The state after a call admitted with `ticket` ended with `outcome`. Outcomes of calls admitted
 * by an earlier state are ignored: a slow call started while closed does not decide a probe.
 */
export const settle = (
  state: BreakerState,
  ticket: Ticket,
  outcome: Outcome,
  now: number,
  settings: BreakerSettings
): BreakerState => {
  const s = current(state, now)
  if (ticket.generation !== s.generation) return s
  const open = (): BreakerState => ({ _tag: "Open", generation: s.generation + 1, until: now + settings.openMs })
  switch (s._tag) {
    case "Closed":
      if (outcome === "success") return s.failures === 0 ? s : { ...s, failures: 0 }
      if (outcome === "neutral") return s
      return s.failures + 1 >= settings.failureThreshold ? open() : { ...s, failures: s.failures + 1 }
    case "Open":
      return s
    case "HalfOpen": {
      const inFlight = Math.max(0, s.inFlight - 1)
      if (outcome === "failure") return open()
      if (outcome === "neutral") return { ...s, inFlight }
      return s.successes + 1 >= settings.halfOpenProbes
        ? { _tag: "Closed", generation: s.generation + 1, failures: 0 }
        : { ...s, inFlight, successes: s.successes + 1 }
    }
  }
}

/** The breaker rejected the call without running it. */
export class CircuitOpen extends Data.TaggedError("CircuitOpen")<{
  /** Milliseconds until probes are admitted again; 0 when half-open probes are all taken. */
  readonly retryInMs: number
}> {
  override get message() {
    return `circuit open, next probe in ${this.retryInMs} ms`
  }
}

export interface CircuitBreaker {
  /**
   * Runs `effect` if the breaker admits it, otherwise fails with `CircuitOpen` without running
   * it. A failure counts against the breaker when `isFailure` says so (default: every failure);
   * other failures count as success, since the remote answered. A defect counts as failure,
   * interruption as nothing.
   */
  readonly run: <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    isFailure?: (error: E) => boolean
  ) => Effect.Effect<A, E | CircuitOpen, R>
  readonly state: Effect.Effect<BreakerState>
}

export const make = (
  settings: BreakerSettings,
  /** Called on each change of state tag, inside the state lock, so calls see changes in order. */
  onTransition: (from: BreakerState, to: BreakerState) => Effect.Effect<void> = () => Effect.void
): Effect.Effect<CircuitBreaker> =>
  Effect.gen(function*() {
    const ref = yield* SynchronizedRef.make<BreakerState>(initial)

    const transition = (f: (s: BreakerState, now: number) => readonly [Ticket | undefined, BreakerState]) =>
      SynchronizedRef.modifyEffect(ref, (before) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const [ticket, after] = f(before, now)
          const seen = current(before, now)
          if (seen._tag !== before._tag) yield* onTransition(before, seen)
          if (after._tag !== seen._tag) yield* onTransition(seen, after)
          return [[ticket, after, now] as const, after] as const
        }))

    const run = <A, E, R>(
      effect: Effect.Effect<A, E, R>,
      isFailure: (error: E) => boolean = () => true
    ): Effect.Effect<A, E | CircuitOpen, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const [ticket, after, now] = yield* transition((s, now) => admit(s, now, settings))
          if (ticket === undefined) {
            return yield* new CircuitOpen({ retryInMs: after._tag === "Open" ? Math.max(0, after.until - now) : 0 })
          }
          const exit = yield* Effect.exit(restore(effect))
          const outcome: Outcome = Exit.match(exit, {
            onSuccess: () => "success",
            onFailure: (cause) =>
              Option.match(Cause.failureOption(cause), {
                onSome: (error) => isFailure(error) ? "failure" : "success",
                onNone: () => Cause.isInterruptedOnly(cause) ? "neutral" : "failure"
              })
          })
          yield* transition((s, now) => [ticket, settle(s, ticket, outcome, now, settings)])
          return yield* exit
        })
      )

    const state = Effect.zipWith(SynchronizedRef.get(ref), Clock.currentTimeMillis, current)

    return { run, state }
  })

/** The numeric encoding exported as a gauge: 0 closed, 1 half-open, 2 open. */
export const stateCode = (state: BreakerState): number =>
  state._tag === "Closed" ? 0 : state._tag === "HalfOpen" ? 1 : 2
