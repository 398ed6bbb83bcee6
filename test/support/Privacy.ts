import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** Every table a vector must never reach: stored answers, events, audit, tombstones, consent. */
export const storageTables = ["inbox_messages", "audit_log", "outbox", "outbox_events", "tombstones", "consent_records"]

/** Every row of `tables` that exists, each as its JSON text, for searching stored data. */
export const storedRows = (tables: ReadonlyArray<string> = storageTables) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const dumps: Array<string> = []
    for (const table of tables) {
      const exists = yield* sql<{ t: string | null }>`SELECT to_regclass(${table})::text AS t`
      if (exists[0]!.t === null) continue
      const rows = yield* sql<{ t: string }>`SELECT row_to_json(x)::text AS t FROM ${sql(table)} x`
      dumps.push(...rows.map((r) => r.t))
    }
    return dumps
  })
