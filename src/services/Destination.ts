import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer } from "effect"
import type { OutboxFailure, OutboxRow } from "./Outbox.js"
import { Queue } from "./Queue.js"

export interface DestinationShape {
  /**
   * Delivers outbox rows and returns the ones that failed, each with its error; the others count
   * as delivered. Runs inside the relay's transaction, which holds the rows' locks and removes the
   * delivered ones at commit: a destination in this database (the work queue) therefore delivers
   * exactly once, one outside it (a broker) at least once, and must bound its own time since the
   * locks are held meanwhile. A failure of the whole call is retried when transient and otherwise
   * counted against every row.
   */
  readonly deliver: (rows: ReadonlyArray<OutboxRow>) => Effect.Effect<ReadonlyArray<OutboxFailure>, SqlError>
}

/** Where the relay sends outbox rows. The work queue today; a broker can be added beside it. */
export class Destination extends Context.Tag("gatehouse/Destination")<Destination, DestinationShape>() {
  /** Fans each row out to the queues subscribed to its topic, in the relay's transaction. */
  static readonly layerQueue = Layer.effect(
    Destination,
    Effect.map(Queue, (queue) => ({
      deliver: (rows) => Effect.as(queue.publish(rows), [])
    }))
  )
}
