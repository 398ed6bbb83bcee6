import { Duration, Schedule } from "effect"
import { retryDelayMs } from "../domain/Backoff.js"

/**
 * Named retry and supervision schedules. Services take their schedules from here so that every
 * retry policy of the process can be read in one place.
 */

/** Transient database errors (serialization failure, deadlock, lost connection): short, jittered. */
export const transientDatabase = Schedule.exponential(Duration.millis(10), 2).pipe(
  Schedule.jittered,
  Schedule.upTo(Duration.seconds(5)),
  Schedule.intersect(Schedule.recurs(8))
)

/** Connecting to the database at start: keep trying, capped per attempt, until the budget runs out. */
export const databaseStartup = (budget: Duration.DurationInput) =>
  Schedule.exponential(Duration.millis(200), 1.5).pipe(
    Schedule.either(Schedule.spaced(Duration.seconds(2))),
    Schedule.jittered,
    Schedule.upTo(budget)
  )

/** A supervised background loop that failed: restart it, backing off to at most 30 seconds. */
export const supervisorRestart = Schedule.exponential(Duration.millis(250), 2).pipe(
  Schedule.either(Schedule.spaced(Duration.seconds(30))),
  Schedule.jittered,
  Schedule.resetAfter(Duration.minutes(1))
)

/**
 * A ticketing provider request that failed transiently: exponential backoff with jitter, a bounded
 * number of retries, and never sooner than the provider's `Retry-After` (read by `retryAfterMs`).
 */
export const providerRetry = <E>(
  settings: { readonly baseMs: number; readonly retries: number },
  retryAfterMs: (error: E) => number | undefined
) =>
  Schedule.exponential(Duration.millis(settings.baseMs), 2).pipe(
    Schedule.jittered,
    Schedule.intersect(Schedule.recurs(settings.retries)),
    Schedule.intersect(Schedule.identity<E>()),
    Schedule.modifyDelay(([, error], delay) => Duration.max(delay, Duration.millis(retryAfterMs(error) ?? 0)))
  )

/** Between two sync runs of one mapped event: the interval, jittered so that events spread out. */
export const ticketSyncInterval = (intervalMs: number) =>
  Schedule.spaced(Duration.millis(intervalMs)).pipe(Schedule.jittered)

/** Waiting for a concurrent copy of a message to finish: frequent at first, within the caller's budget. */
export const inboxWait = (budget: Duration.DurationInput) =>
  Schedule.exponential(Duration.millis(20), 1.5).pipe(
    Schedule.either(Schedule.spaced(Duration.millis(250))),
    Schedule.jittered,
    Schedule.upTo(budget)
  )
/** Writing recorded identification attempts while the database is unreachable: keep trying, at most every 5 seconds. */
export const attemptLogRetry = Schedule.exponential(Duration.millis(100), 2).pipe(
  Schedule.either(Schedule.spaced(Duration.seconds(5))),
  Schedule.jittered
)

/**
 * Pause of the check-in write-back loop after its `rounds`-th round in a row that found the
 * provider unavailable: from one second, doubling up to `maxMs`, with equal jitter (`random` in [0, 1)).
 */
export const writeBackPause = (maxMs: number, rounds: number, random: number) =>
  retryDelayMs({ baseMs: Math.min(1000, maxMs), maxMs }, rounds, random)
