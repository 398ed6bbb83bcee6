import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Prometheus } from "../../layers/Metrics.js"
import { Health } from "../../services/Health.js"
import { GatehouseApi } from "../Api.js"
import { Readiness } from "../api/System.js"
import { NotReady } from "../Errors.js"

export const SystemHandlers = HttpApiBuilder.group(GatehouseApi, "system", (handlers) =>
  Effect.gen(function*() {
    const health = yield* Health
    const prometheus = yield* Prometheus

    return handlers
      .handle("live", () => Effect.succeed({ status: "live" as const }))
      .handle("ready", () =>
        Effect.gen(function*() {
          const components = yield* health.snapshot
          return (yield* health.ready)
            ? new Readiness({ status: "ready", components })
            : yield* new NotReady({ components })
        }))
      .handle("metrics", () => prometheus.scrape)
  }))
