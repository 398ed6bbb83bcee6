import { SqlError } from "@effect/sql/SqlError"
import { Effect, Option, Predicate } from "effect"
import { transientDatabase } from "../layers/Schedules.js"

/**
 * SQLSTATEs and driver errors that say nothing about the statement itself: running the same work
 * again may succeed. Every retry path of the project classifies errors with this one list.
 */
const transientSqlStates: ReadonlySet<string> = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "55P03", // lock_not_available
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  "08000", // connection_exception
  "08001", // sqlclient_unable_to_establish_sqlconnection
  "08003", // connection_does_not_exist
  "08004", // sqlserver_rejected_establishment_of_sqlconnection
  "08006", // connection_failure
  "08P01" // protocol_violation (seen when a connection is cut mid-message)
])

const transientNodeCodes: ReadonlySet<string> = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT"])

const transientMessage =
  /Connection terminated|timeout exceeded when trying to connect|Connection timed out|Client has encountered a connection error|not queryable/i

/** The PostgreSQL error code behind a failure, if any. */
export const sqlState = (error: unknown): string | undefined => {
  const cause = error instanceof SqlError ? error.cause : error
  if (Predicate.hasProperty(cause, "code") && typeof cause.code === "string") return cause.code
  return undefined
}

/** Whether running the same work again may succeed. */
export const isTransient = (error: unknown): boolean => {
  if (!(error instanceof SqlError)) return false
  const code = sqlState(error)
  if (code !== undefined && (transientSqlStates.has(code) || transientNodeCodes.has(code))) return true
  const cause = error.cause
  const text = `${error.message} ${cause instanceof Error ? cause.message : String(cause)}`
  return transientMessage.test(text)
}

export const isUniqueViolation = (error: unknown): boolean => sqlState(error) === "23505"

/** Retries `effect` on transient database errors with the named jittered schedule. */
export const retryTransient = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.retry(effect, { schedule: transientDatabase, while: isTransient })

/**
 * `withTransaction` turns a failing COMMIT (or ROLLBACK) into a defect. Wrapped around a whole
 * transaction, this gives such a defect back as its `SqlError`, so that `retryTransient` can retry
 * a commit that failed on a lost connection. Only safe when the work is idempotent or fenced: the
 * commit may have gone through.
 */
export const commitFailuresAsErrors = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
  Effect.catchSomeDefect(
    effect,
    (defect) => defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none()
  )
