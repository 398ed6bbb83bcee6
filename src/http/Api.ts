import { HttpApi, OpenApi } from "@effect/platform"
import { SystemApi } from "./api/System.js"

/** The whole HTTP API; each component adds its group here. */
export class GatehouseApi extends HttpApi.make("gatehouse")
  .add(SystemApi)
  .annotate(OpenApi.Title, "Gatehouse")
  .annotate(
    OpenApi.Description,
    "Face-based venue admission. Every mutating device endpoint takes an Idempotency-Key; errors are application/problem+json."
  )
  .annotate(OpenApi.Version, "1.0.0")
{}
