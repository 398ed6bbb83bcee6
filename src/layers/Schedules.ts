import { Duration, Schedule } from "effect"

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
