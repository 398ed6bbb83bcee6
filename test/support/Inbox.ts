import { SqlClient } from "@effect/sql"
import { Effect, Schema } from "effect"

/**
 * A tiny component for inbox tests: `apply` records one effect of a message and adds its amount
 * to a running total, so a message applied twice shows up in both.
 */
export const createLedger = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.all([
    sql`CREATE TABLE IF NOT EXISTS ledger (id bigserial PRIMARY KEY, scope text, key text, amount int)`,
    sql`CREATE TABLE IF NOT EXISTS ledger_total (id int PRIMARY KEY, total int NOT NULL)`,
    sql`INSERT INTO ledger_total VALUES (1, 0) ON CONFLICT DO NOTHING`
  ], { discard: true }))

export const Applied = Schema.Struct({ entry: Schema.Number, amount: Schema.Number })

/** A rejection that is the message's fault: stored and replayed. */
export class AmountInvalid extends Schema.TaggedError<AmountInvalid>()("AmountInvalid", {
  amount: Schema.Number
}) {}

export const apply = (scope: string, key: string, amount: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ id: number }>`
      INSERT INTO ledger (scope, key, amount) VALUES (${scope}, ${key}, ${amount}) RETURNING id
    `
    yield* sql`UPDATE ledger_total SET total = total + ${amount} WHERE id = 1`
    if (amount < 0) return yield* new AmountInvalid({ amount })
    return { entry: row!.id, amount }
  })

/** How many effects each key of a scope had. */
export const effectsOf = (scope: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ key: string; n: number }>`SELECT key, count(*)::int AS n FROM ledger WHERE scope = ${scope} GROUP BY key`,
      (rows) => Object.fromEntries(rows.map((r) => [r.key, r.n])) as Record<string, number>
    ))
