import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { NotReady } from "../Errors.js"

export const ComponentStateSchema = Schema.Struct({
  status: Schema.Literal("starting", "up", "degraded", "down"),
  detail: Schema.optional(Schema.String),
  since: Schema.String
})

export class Readiness extends Schema.Class<Readiness>("Readiness")({
  status: Schema.Literal("ready"),
  components: Schema.Record({ key: Schema.String, value: ComponentStateSchema })
}) {}

/** Liveness, readiness and metrics: unauthenticated, for orchestrators and scrapers. */
export class SystemApi extends HttpApiGroup.make("system")
  .add(
    HttpApiEndpoint.get("live", "/health/live")
      .addSuccess(Schema.Struct({ status: Schema.Literal("live") }))
      .annotate(OpenApi.Description, "The process is running and answering.")
  )
  .add(
    HttpApiEndpoint.get("ready", "/health/ready")
      .addSuccess(Readiness)
      .addError(NotReady)
      .annotate(OpenApi.Description, "Ready when migrations ran and every component is up or degraded.")
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4" }))
      .annotate(OpenApi.Description, "Prometheus text exposition format.")
  )
  .annotate(OpenApi.Title, "System")
{}
