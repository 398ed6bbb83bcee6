import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { runBaseline } from "./baseline.js"
import { fillGallery } from "./gallery.js"
import { runIdentifyBench } from "./identify.js"
import { consume } from "./queueConsumer.js"

/** A scenario step that runs inside the bench service process (see bench/server.ts). */
export type Command = (args: any) => Effect.Effect<unknown, unknown, any>

export const commands: Record<string, Command> = {
  ping: () => Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1 AS one`),
  baseline: runBaseline,
  consume,
  fillGallery,
  /** The matching engineer's in-process identify bench, run here so its memory is the service's. */
  identify: (args) => Effect.promise(() => runIdentifyBench(args))
}
