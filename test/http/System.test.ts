import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { request } from "../support/Http.js"
import { TestServerLive } from "../support/Server.js"

describe("system endpoints", () => {
  it.layer(TestServerLive())((it) => {
    it.effect("reports live and, with the database migrated, ready", () =>
      Effect.gen(function*() {
        const live = yield* request("GET", "/health/live")
        const ready = yield* request("GET", "/health/ready")

        expect(live.status).toBe(200)
        expect(ready.status).toBe(200)
        expect(ready.body.components.database.status).toBe("up")
      }))

    it.effect("serves the OpenAPI document and the interactive docs", () =>
      Effect.gen(function*() {
        const spec = yield* request("GET", "/openapi.json")
        const docs = yield* request("GET", "/docs")

        expect(spec.body.openapi).toMatch(/^3\./)
        expect(Object.keys(spec.body.paths)).toContain("/health/ready")
        expect(docs.status).toBe(200)
        expect(docs.headers.get("content-type")).toContain("text/html")
      }))

    it.effect("exports request counts by route template in Prometheus format", () =>
      Effect.gen(function*() {
        yield* request("GET", "/health/live")
        const metrics = yield* request("GET", "/metrics")

        expect(metrics.status).toBe(200)
        expect(metrics.text).toMatch(/gatehouse_http_requests_total\{[^}]*route="\/health\/live"[^}]*status="200"/)
      }))

    it.effect("answers an unknown path with a problem", () =>
      Effect.gen(function*() {
        const reply = yield* request("GET", "/v1/nothing-here")

        expect(reply.status).toBe(404)
        expect(reply.headers.get("content-type")).toBe("application/problem+json")
      }))
  })
})
