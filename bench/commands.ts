import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { runBaseline } from "./baseline.js"

/** A scenario step that runs inside the bench service process (see bench/server.ts). */
export type Command = (args: any) => Effect.Effect<unknown, unknown, SqlClient.SqlClient>

export const commands: Record<string, Command> = {
  ping: () => Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1 AS one`),
  baseline: runBaseline
}
