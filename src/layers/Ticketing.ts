import { NodeHttpClient } from "@effect/platform-node"
import { Layer } from "effect"
import { CheckInWriteBack } from "../services/CheckInWriteBack.js"
import { TicketProvider } from "../services/TicketProvider.js"
import { Tickets } from "../services/Tickets.js"
import { TicketSync } from "../services/TicketSync.js"

/**
 * The ticketing component: the provider client (over Node's HTTP client), synced tickets and
 * their links, the scheduled sync, and the write-back of gate check-ins. Needs the database,
 * configuration, health, the audit log and the messaging services (queue, inbox, listener).
 */
export const TicketingLive = Layer.mergeAll(TicketSync.layer, CheckInWriteBack.layer).pipe(
  Layer.provideMerge(Tickets.layer),
  Layer.provideMerge(TicketProvider.layer),
  Layer.provide(NodeHttpClient.layer)
)
