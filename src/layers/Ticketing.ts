import { NodeHttpClient } from "@effect/platform-node"
import { Layer } from "effect"
import { TicketProvider } from "../services/TicketProvider.js"
import { Tickets } from "../services/Tickets.js"
import { TicketSync } from "../services/TicketSync.js"

/**
 * The ticketing component: the provider client (over Node's HTTP client), synced tickets and
 * their links, and the scheduled sync. Needs the database, configuration, health and the audit log.
 */
export const TicketingLive = TicketSync.layer.pipe(
  Layer.provideMerge(Tickets.layer),
  Layer.provideMerge(TicketProvider.layer),
  Layer.provide(NodeHttpClient.layer)
)
