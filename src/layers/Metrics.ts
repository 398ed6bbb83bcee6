import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Context, Effect, Layer } from "effect"

/**
 * Renders every Effect `Metric` of the process in the Prometheus text format, through the
 * OpenTelemetry metric producer and the OpenTelemetry Prometheus serializer.
 */
export class Prometheus extends Context.Tag("gatehouse/Prometheus")<Prometheus, {
  readonly scrape: Effect.Effect<string>
}>() {
  static readonly layer = Layer.unwrapEffect(Effect.sync(() => {
    const exporter = new PrometheusExporter({ preventServerStart: true })
    const serializer = new PrometheusSerializer()
    const scrape = Effect.promise(async () => {
      const { resourceMetrics } = await exporter.collect()
      return serializer.serialize(resourceMetrics)
    })
    return Layer.merge(
      Layer.succeed(Prometheus, { scrape }),
      OtelMetrics.layer(() => exporter).pipe(Layer.provide(Resource.layer({ serviceName: "gatehouse" })))
    )
  }))
}
