import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import { retryTransient } from "../services/Database.js"

/**
 * For handlers: retries transient database errors, then turns what is left into a defect, which
 * the problem middleware answers with a correlation id: 503 when the database is still unreachable,
 * 500 otherwise. Typed domain errors pass through.
 */
export const orDieSql = <A, E, R>(
  effect: Effect.Effect<A, E | SqlError, R>
): Effect.Effect<A, Exclude<E, SqlError>, R> =>
  retryTransient(effect).pipe(
    Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", Effect.die)
  ) as any
