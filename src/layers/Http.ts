import { HttpApiBuilder, HttpApiScalar, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { createServer } from "node:http"
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

/** The HTTP server: the API, `/openapi.json`, `/docs`, problem+json errors and request metrics. */
export const HttpLive = Layer.unwrapEffect(Effect.map(AppConfig, (config) =>
  HttpApiBuilder.serve().pipe(
    Layer.provide(HttpApiBuilder.middleware(problemMiddleware({
      maxBodyBytes: config.maxBodyBytes,
      routes: routeTable(GatehouseApi)
    }))),
    Layer.provide(HttpApiScalar.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(ApiLive),
    HttpServer.withLogAddress,
    Layer.provideMerge(NodeHttpServer.layer(createServer, { port: config.port, host: config.host }))
  )))
