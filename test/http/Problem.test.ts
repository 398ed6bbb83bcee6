import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer, Logger, Schema } from "effect"
import * as Http from "node:http"
import { createServer } from "node:http"
import { SafeString } from "../../src/domain/Text.js"
import { maxJsonDepth, nestedDeeperThan, problemMiddleware, routeTable } from "../../src/http/Problem.js"
import { request } from "../support/Http.js"

class SeatTaken extends Schema.TaggedError<SeatTaken>()(
  "SeatTaken",
  { seat: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `seat ${this.seat} is taken`
  }
}

class Probe extends HttpApiGroup.make("probe")
  .add(
    HttpApiEndpoint.post("echo", "/echo")
      .setPayload(Schema.Struct({ name: SafeString, count: Schema.Int }))
      .addSuccess(Schema.Struct({ name: Schema.String }))
  )
  .add(HttpApiEndpoint.get("boom", "/boom").addSuccess(Schema.String))
  .add(HttpApiEndpoint.get("unreachable", "/unreachable").addSuccess(Schema.String))
  .add(
    HttpApiEndpoint.get("taken", "/seats/:seat").setPath(Schema.Struct({ seat: Schema.String }))
      .addSuccess(Schema.String).addError(SeatTaken)
  )
{}

class ProbeApi extends HttpApi.make("probe").add(Probe) {}

const ProbeLive = HttpApiBuilder.group(ProbeApi, "probe", (handlers) =>
  handlers
    .handle("echo", ({ payload }) => Effect.succeed({ name: payload.name }))
    .handle("boom", () => Effect.die(new Error("invariant broken")))
    .handle("unreachable", () =>
      Effect.die(
        new SqlError({
          message: "Failed to acquire connection",
          cause: new Error("timeout exceeded when trying to connect")
        })
      ))
    .handle("taken", ({ path }) => Effect.fail(new SeatTaken({ seat: path.seat }))))

const ServerLive = HttpApiBuilder.serve().pipe(
  Layer.provide(HttpApiBuilder.middleware(problemMiddleware({ maxBodyBytes: 2048, routes: routeTable(ProbeApi) }))),
  Layer.provide(HttpApiBuilder.api(ProbeApi).pipe(Layer.provide(ProbeLive))),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
  Layer.provide(Logger.remove(Logger.defaultLogger))
)

const isProblem = (headers: Headers) => expect(headers.get("content-type")).toBe("application/problem+json")

describe("problem+json answers", () => {
  it.layer(ServerLive)((it) => {
    it.effect("names the wrong field of a bad body without schema internals", () =>
      Effect.gen(function*() {
        const reply = yield* request("POST", "/echo", { body: { name: "ada", count: "three" } })

        expect(reply.status).toBe(400)
        isProblem(reply.headers)
        expect(reply.body.code).toBe("InvalidRequest")
        expect(reply.body.errors[0].path).toBe("count")
        expect(reply.body.detail).toMatch(/^count: /)
        expect(reply.text).not.toContain("readonly")
      }))

    it.effect("rejects NUL characters and lone surrogates in strings", () =>
      Effect.gen(function*() {
        const nul = yield* request("POST", "/echo", { raw: "{\"name\":\"a\\u0000b\",\"count\":1}" })
        const surrogate = yield* request("POST", "/echo", { raw: "{\"name\":\"a\\ud800b\",\"count\":1}" })

        expect(nul.status).toBe(400)
        expect(nul.body.errors[0].path).toBe("name")
        expect(surrogate.status).toBe(400)
      }))

    it.effect("answers malformed JSON with 400", () =>
      Effect.gen(function*() {
        const reply = yield* request("POST", "/echo", { raw: "{\"name\":" })

        expect(reply.status).toBe(400)
        isProblem(reply.headers)
        expect(reply.body.code).toBe("MalformedBody")
      }))

    it.effect("answers an unknown path with 404", () =>
      Effect.gen(function*() {
        const reply = yield* request("GET", "/nowhere")

        expect(reply.status).toBe(404)
        isProblem(reply.headers)
        expect(reply.body.code).toBe("RouteNotFound")
      }))

    it.effect("refuses a body over the limit with 413 before parsing, and a body of undeclared length with 411", () =>
      Effect.gen(function*() {
        const big = JSON.stringify({ name: "x".repeat(5000), count: 1 })
        const declared = yield* request("POST", "/echo", { raw: big })
        const address = (yield* HttpServer.HttpServer).address as HttpServer.TcpAddress
        const chunked = yield* Effect.async<number>((resume) => {
          const req = Http.request({
            host: "127.0.0.1",
            port: address.port,
            method: "POST",
            path: "/echo",
            headers: { "content-type": "application/json", "transfer-encoding": "chunked" }
          }, (res) => resume(Effect.succeed(res.statusCode ?? 0)))
          req.on("error", () => {})
          for (let i = 0; i < big.length; i += 512) req.write(big.slice(i, i + 512))
          req.end()
        })

        expect(declared.status).toBe(413)
        isProblem(declared.headers)
        expect(chunked).toBe(411)
      }))

    it.effect("refuses a body nested deeper than the limit with 400 before decoding; brackets in strings do not count", () =>
      Effect.gen(function*() {
        const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth)
        const deep = yield* request("POST", "/echo", { raw: `{"name":"x","count":1,"extra":${nested(900)}}` })
        const inString = yield* request("POST", "/echo", {
          raw: JSON.stringify({ name: "[".repeat(900), count: 1 })
        })

        expect([deep.status, deep.body.code]).toEqual([400, "BodyTooDeep"])
        isProblem(deep.headers)
        expect(inString.status).toBe(200)
      }))

    it.prop(
      "counts nesting as JSON does, outside strings",
      [fc.jsonValue({ maxDepth: 8 })],
      ([value]) => {
        const text = JSON.stringify(value)
        const depthOf = (v: unknown): number =>
          Array.isArray(v)
            ? 1 + Math.max(0, ...v.map(depthOf))
            : v !== null && typeof v === "object"
            ? 1 + Math.max(0, ...Object.values(v).map(depthOf))
            : 0
        const depth = depthOf(value)
        expect(nestedDeeperThan(text, depth)).toBe(false)
        expect(nestedDeeperThan(text, depth - 1)).toBe(depth > 0)
        expect(maxJsonDepth).toBeGreaterThan(8)
      }
    )

    it.effect("turns a defect into a 500 problem with a correlation id", () =>
      Effect.gen(function*() {
        const reply = yield* request("GET", "/boom", { headers: { "x-request-id": "req-12345678" } })

        expect(reply.status).toBe(500)
        isProblem(reply.headers)
        expect(reply.body.correlationId).toBe("req-12345678")
        expect(reply.text).not.toContain("invariant broken")
      }))

    it.effect("answers a database that cannot be reached with a 503 worth retrying, not a 500", () =>
      Effect.gen(function*() {
        const reply = yield* request("GET", "/unreachable", { headers: { "x-request-id": "req-87654321" } })

        expect(reply.status).toBe(503)
        isProblem(reply.headers)
        expect(reply.body).toMatchObject({ code: "DatabaseUnavailable", correlationId: "req-87654321" })
        expect(reply.text).not.toContain("timeout exceeded")
      }))

    it.effect("answers a typed error with its declared status and fields", () =>
      Effect.gen(function*() {
        const reply = yield* request("GET", "/seats/A7")

        expect(reply.status).toBe(409)
        isProblem(reply.headers)
        expect(reply.body).toMatchObject({ code: "SeatTaken", seat: "A7", detail: "seat A7 is taken" })
      }))
  })
})
