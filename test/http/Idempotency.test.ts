import {
  HttpApi,
  HttpApiBuilder,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiSchema,
  HttpServerRequest
} from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer, Schema } from "effect"
import * as Crypto from "node:crypto"
import { createServer } from "node:http"
import { idempotent, idempotentEndpoint } from "../../src/http/Idempotency.js"
import { problemMiddleware, routeTable } from "../../src/http/Problem.js"
import { Prometheus } from "../../src/layers/Metrics.js"
import { Inbox } from "../../src/services/Inbox.js"
import { TestDatabaseLive } from "../support/Database.js"
import { request } from "../support/Http.js"

// A small API of its own, as a device endpoint would use the adapter.

const Thing = Schema.Struct({ id: Schema.Number, name: Schema.String })
const NewThing = Schema.Struct({ name: Schema.String, tags: Schema.optional(Schema.Array(Schema.String)) })

class ThingInvalid extends Schema.TaggedError<ThingInvalid>()(
  "ThingInvalid",
  { reason: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

class ThingStoreDown extends Schema.TaggedError<ThingStoreDown>()(
  "ThingStoreDown",
  {},
  HttpApiSchema.annotations({ status: 503 })
) {}

class ThingsApi extends HttpApiGroup.make("things").add(
  HttpApiEndpoint.post("create", "/v1/things")
    .setPayload(NewThing)
    .addSuccess(Thing, { status: 201 })
    .addError(ThingInvalid)
    .addError(ThingStoreDown)
    .pipe(idempotentEndpoint)
) {}

class TestApi extends HttpApi.make("test").add(ThingsApi) {}

const gate = Effect.runSync(Deferred.make<void>())
let storeDown = true

const createThing = (payload: typeof NewThing.Type) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (payload.name === "bad") return yield* new ThingInvalid({ reason: "bad is not a name" })
    if (payload.name === "down" && storeDown) {
      storeDown = false
      return yield* new ThingStoreDown()
    }
    if (payload.name === "slow") yield* Deferred.await(gate)
    const [row] = yield* sql<{ id: number }>`INSERT INTO things (name) VALUES (${payload.name}) RETURNING id`
    return { id: row!.id, name: payload.name }
  }).pipe(Effect.catchTag("SqlError", Effect.die))

const ThingsLive = HttpApiBuilder.group(
  TestApi,
  "things",
  (handlers) =>
    handlers.handle("create", ({ headers, payload }) =>
      Effect.gen(function*() {
        // Device endpoints take the device from their authentication; this test API from a header.
        const deviceId = (yield* HttpServerRequest.HttpServerRequest).headers["x-device"] ?? "d1"
        return yield* idempotent({
          deviceId,
          key: headers["idempotency-key"],
          payload,
          success: Thing,
          status: 201,
          rejections: ThingInvalid
        }, createThing(payload))
      }))
)

const ServerLive = HttpApiBuilder.serve().pipe(
  Layer.provide(HttpApiBuilder.middleware(problemMiddleware({ maxBodyBytes: 100_000, routes: routeTable(TestApi) }))),
  Layer.provide(HttpApiBuilder.api(TestApi).pipe(Layer.provide(ThingsLive))),
  Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
  Layer.provideMerge(
    Layer.effectDiscard(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE things (id serial PRIMARY KEY, name text NOT NULL)`)
    )
  ),
  Layer.provideMerge(Inbox.layerWith({ claimLease: Duration.seconds(30) })),
  Layer.provideMerge(Prometheus.layer),
  Layer.provideMerge(TestDatabaseLive)
)

const post = (body: unknown, key: string | undefined, device = "d1", raw?: string) =>
  request("POST", "/v1/things", {
    ...(raw === undefined ? { body } : { raw }),
    headers: { "x-device": device, ...(key === undefined ? {} : { "idempotency-key": key }) }
  })

const countThings = (name: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM things WHERE name = ${name}`, (r) => r[0]!.n)
  )

describe("HTTP idempotency", () => {
  layer(ServerLive, { timeout: 60_000, excludeTestServices: true })((it) => {
    it.effect("replays the first answer, status and body, with Idempotent-Replayed", () =>
      Effect.gen(function*() {
        const key = Crypto.randomUUID()

        const first = yield* post({ name: "lamp", tags: ["a", "b"] }, key)
        const second = yield* post({ name: "lamp", tags: ["a", "b"] }, key)
        const reordered = yield* post(undefined, key, "d1", `{ "tags": [ "a", "b" ],\n  "name": "lamp" }`)

        expect(first.status).toBe(201)
        expect(first.headers.get("idempotent-replayed")).toBeNull()
        expect(second.status).toBe(201)
        expect(second.body).toEqual(first.body)
        expect(second.headers.get("idempotent-replayed")).toBe("true")
        expect(reordered.body).toEqual(first.body)
        expect(yield* countThings("lamp")).toBe(1)
      }))

    it.effect("treats a quoted key (structured field) and the bare key as one", () =>
      Effect.gen(function*() {
        const key = Crypto.randomUUID()

        yield* post({ name: "quoted" }, key)
        const quoted = yield* post({ name: "quoted" }, `"${key}"`)

        expect(quoted.headers.get("idempotent-replayed")).toBe("true")
      }))

    it.effect("requires the Idempotency-Key header and rejects a malformed one with a problem", () =>
      Effect.gen(function*() {
        const missing = yield* post({ name: "x" }, undefined)
        const malformed = yield* post({ name: "x" }, "has space")
        const tooLong = yield* post({ name: "x" }, "k".repeat(256))

        for (const reply of [missing, malformed, tooLong]) {
          expect(reply.status).toBe(400)
          expect(reply.headers.get("content-type")).toBe("application/problem+json")
        }
        expect(missing.body.detail).toContain("Idempotency-Key header is required")
        expect(malformed.body.detail).toContain("visible ASCII")
        expect(yield* countThings("x")).toBe(0)
      }))

    it.effect("answers the same key with another payload with 422, leaving the first answer", () =>
      Effect.gen(function*() {
        const key = Crypto.randomUUID()
        const first = yield* post({ name: "chair" }, key)

        const other = yield* post({ name: "table" }, key)
        const again = yield* post({ name: "chair" }, key)

        expect(other.status).toBe(422)
        expect(other.headers.get("content-type")).toBe("application/problem+json")
        expect(other.body.code).toBe("IdempotencyKeyReused")
        expect(again.body).toEqual(first.body)
        expect(yield* countThings("table")).toBe(0)
      }))

    it.effect("answers a copy that arrives while the first still runs with 409", () =>
      Effect.gen(function*() {
        const key = Crypto.randomUUID()
        const first = yield* Effect.fork(post({ name: "slow" }, key))

        yield* Effect.flatMap(Inbox, (inbox) =>
          Effect.repeat(inbox.lookup("device:d1", key), { until: (found) => found._tag === "Some" }))
        const copy = yield* post({ name: "slow" }, key)
        yield* Deferred.succeed(gate, undefined)
        const done = yield* first.await.pipe(Effect.flatten)
        const after = yield* post({ name: "slow" }, key)

        expect(copy.body.code).toBe("MessageInProgress")
        expect(done.status).toBe(201)
        expect(after.headers.get("idempotent-replayed")).toBe("true")
        expect(yield* countThings("slow")).toBe(1)
      }))

    it.effect("replays a rejection that is the request's fault, but not a failure that is not", () =>
      Effect.gen(function*() {
        const badKey = Crypto.randomUUID()
        const downKey = Crypto.randomUUID()

        const bad = yield* post({ name: "bad" }, badKey)
        const badAgain = yield* post({ name: "bad" }, badKey)
        const down = yield* post({ name: "down" }, downKey)
        const downAgain = yield* post({ name: "down" }, downKey)

        expect(bad.status).toBe(400)
        expect(bad.body.code).toBe("ThingInvalid")
        expect(badAgain.status).toBe(400)
        expect(badAgain.body).toEqual(bad.body)
        expect(badAgain.headers.get("content-type")).toBe("application/problem+json")
        expect(badAgain.headers.get("idempotent-replayed")).toBe("true")
        expect(down.status).toBe(503)
        expect(downAgain.status).toBe(201)
        expect(downAgain.headers.get("idempotent-replayed")).toBeNull()
      }))

    it.effect("scopes keys per device: another device's key never replays this one's answer", () =>
      Effect.gen(function*() {
        const key = Crypto.randomUUID()

        const mine = yield* post({ name: "shared" }, key, "d1")
        const theirs = yield* post({ name: "shared" }, key, "d2")

        expect(theirs.headers.get("idempotent-replayed")).toBeNull()
        expect(theirs.body.id).not.toBe(mine.body.id)
      }))

    it.effect("exports the inbox counters on the metrics endpoint", () =>
      Effect.gen(function*() {
        const text = yield* Effect.flatMap(Prometheus, (p) => p.scrape)

        expect(text).toMatch(/gatehouse_inbox_first_runs_total\{[^}]*outcome="succeeded"/)
        expect(text).toMatch(/gatehouse_inbox_replays_total/)
        expect(text).toMatch(/gatehouse_inbox_conflicts_total/)
        expect(text).toMatch(/gatehouse_inbox_in_progress_total/)
        expect(text).toMatch(/gatehouse_inbox_handler_failures_total/)
      }))
  })
})
