import { HttpApiBuilder, HttpApiScalar, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { createServer, type Server, type ServerResponse } from "node:http"
import { GatehouseApi } from "../http/Api.js"
import { DeviceAuth } from "../http/DeviceAuth.js"
import { AdmissionAdminHandlers, AdmissionsHandlers, AdmissionViewsHandlers } from "../http/handlers/Admissions.js"
import { DeadLettersHandlers } from "../http/handlers/DeadLetters.js"
import { DeviceHandlers } from "../http/handlers/Device.js"
import { DeviceMessagesHandlers } from "../http/handlers/DeviceMessages.js"
import { IdentityAdminHandlers } from "../http/handlers/IdentityAdmin.js"
import { MatchingHandlers } from "../http/handlers/Matching.js"
import { PeopleHandlers } from "../http/handlers/People.js"
import { SystemHandlers } from "../http/handlers/System.js"
import { TicketAdminHandlers, TicketsHandlers } from "../http/handlers/Tickets.js"
import { VenueAdminHandlers } from "../http/handlers/VenueAdmin.js"
import { problemMiddleware, routeTable } from "../http/Problem.js"
import { AdminAuth } from "../http/Security.js"
import { ViewerAuth } from "../http/ViewerAuth.js"
import { AdmissionLive } from "./Admission.js"
import { AppConfig } from "./Config.js"
import { IdentityLive } from "./Identity.js"
import { MatchingLive } from "./Matching.js"
import { TicketingLive } from "./Ticketing.js"

/** Every handler group of the API; each component adds its own here. */
const HandlersLive = Layer.mergeAll(
  SystemHandlers,
  VenueAdminHandlers,
  DeviceHandlers,
  PeopleHandlers,
  DeviceMessagesHandlers,
  IdentityAdminHandlers,
  DeadLettersHandlers,
  MatchingHandlers,
  TicketAdminHandlers,
  TicketsHandlers,
  AdmissionsHandlers,
  AdmissionViewsHandlers,
  AdmissionAdminHandlers
)

const ApiLive = HttpApiBuilder.api(GatehouseApi).pipe(
  Layer.provide(HandlersLive),
  Layer.provide(AdminAuth.layer),
  Layer.provide(DeviceAuth.layer),
  Layer.provide(AdmissionLive),
  Layer.provide(MatchingLive),
  Layer.provide(ViewerAuth.layer),
  Layer.provide(TicketingLive),
  Layer.provide(IdentityLive)
)

/**
 * Ends keep-alive at shutdown, which `server.close()` alone never does: a connection whose client
 * keeps sending is never idle, so the close would wait for ever. From the start of the drain every
 * response not yet begun says `Connection: close` and its socket ends once it is sent, idle
 * connections end at once, and whatever is still open when `graceMs` runs out is cut. Call it
 * before the server takes requests; run the effect it returns to drain.
 */
const keepAliveDrain = (server: Server, graceMs: number) => {
  const pending = new Set<ServerResponse>()
  let draining = false
  server.on("request", (_request, response: ServerResponse) => {
    if (draining) {
      response.shouldKeepAlive = false
      response.once("finish", () => server.closeIdleConnections())
      return
    }
    pending.add(response)
    response.once("close", () => pending.delete(response))
  })
  return Effect.async<void>((resume) => {
    draining = true
    for (const response of pending) {
      if (!response.headersSent) response.shouldKeepAlive = false
      response.once("finish", () => server.closeIdleConnections())
    }
    const cut = setTimeout(() => server.closeAllConnections(), graceMs)
    server.close(() => {
      clearTimeout(cut)
      resume(Effect.void)
    })
    server.closeIdleConnections()
    return Effect.sync(() => clearTimeout(cut))
  })
}

/**
 * The HTTP server: the API, `/openapi.json`, `/docs`, problem+json errors and request metrics.
 * At shutdown it stops accepting, lets requests in flight finish with `Connection: close` within
 * `SHUTDOWN_GRACE_MS`, and only then stops handling requests.
 */
export const HttpLive = Layer.unwrapEffect(Effect.map(AppConfig, (config) => {
  const server = createServer()
  const drained = keepAliveDrain(server, config.shutdownGraceMs)
  const serving = HttpApiBuilder.serve().pipe(
    Layer.provide(HttpApiBuilder.middleware(problemMiddleware({
      maxBodyBytes: config.maxBodyBytes,
      routes: routeTable(GatehouseApi)
    }))),
    Layer.provide(HttpApiScalar.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(ApiLive),
    HttpServer.withLogAddress,
    Layer.provideMerge(NodeHttpServer.layer(() => server, { port: config.port, host: config.host }))
  )
  // Built after the handler is installed, so released before it is removed.
  const drain = Layer.scopedDiscard(Effect.addFinalizer(() => drained))
  return drain.pipe(Layer.provideMerge(serving))
}))
