import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { consumer, Consumers } from "../../src/services/Consumers.js"
import { Queue } from "../../src/services/Queue.js"
import { request } from "../support/Http.js"
import { eventually } from "../support/Messaging.js"
import { adminKey, TestServerLive } from "../support/Server.js"

/** A consumer that fails until the `repaired` table has a row, as if a downstream fault were fixed. */
const registerFlakyConsumer = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE repaired (at timestamptz)`
  yield* sql`CREATE TABLE handled (message_id text)`
  yield* (yield* Consumers).register(consumer({
    name: "billing",
    topics: ["invoice.due"],
    schema: Schema.Struct({ invoice: Schema.String }),
    handle: (_, message) =>
      Effect.gen(function*() {
        const fixed = yield* sql`SELECT 1 FROM repaired`
        if (fixed.length === 0) return yield* Effect.fail(new Error("downstream ledger unavailable"))
        yield* sql`INSERT INTO handled (message_id) VALUES (${message.messageId})`
      })
  }))
})

const listDeadLetters = (query = "") => request("GET", `/v1/admin/dead-letters${query}`, { key: adminKey })

describe("dead letter endpoints", () => {
  layer(TestServerLive({ queueMaxAttempts: 1, queuePollIntervalMs: 50 }), { excludeTestServices: true })((it) => {
    it.effect("lists a parked job with its error and requeues it once on retry", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* registerFlakyConsumer
        yield* (yield* Queue).enqueue([{
          queue: "billing",
          topic: "invoice.due",
          messageId: "inv-1",
          payload: { invoice: "A-1" }
        }])

        const parked = yield* eventually(listDeadLetters(), (r) => r.body.items.length === 1)
        const [item] = parked.body.items
        const one = yield* request("GET", `/v1/admin/dead-letters/${item.id}`, { key: adminKey })
        yield* sql`INSERT INTO repaired VALUES (now())`
        const retried = yield* request("POST", `/v1/admin/dead-letters/${item.id}/retry`, { key: adminKey })
        const twice = yield* request("POST", `/v1/admin/dead-letters/${item.id}/retry`, { key: adminKey })
        const handled = yield* eventually(sql<{ message_id: string }>`SELECT message_id FROM handled`, (r) =>
          r.length > 0)

        expect(item).toMatchObject({
          source: "queue",
          queue: "billing",
          topic: "invoice.due",
          messageId: "inv-1",
          payload: { invoice: "A-1" },
          attempts: 1
        })
        expect(item.lastError).toContain("downstream ledger unavailable")
        expect(parked.body.total).toBe(1)
        expect(one.body).toEqual(item)
        expect(retried.status).toBe(200)
        expect(retried.body).toEqual({ id: item.id, requeuedTo: "queue" })
        expect(twice.status).toBe(404)
        expect(twice.headers.get("content-type")).toBe("application/problem+json")
        expect(twice.body.code).toBe("DeadLetterNotFound")
        expect(handled).toEqual([{ message_id: "inv-1" }])
        expect((yield* listDeadLetters()).body).toEqual({ items: [], total: 0 })
      }))

    it.effect("pages newest first, filters by source and discards", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`
          INSERT INTO dead_letters (source, queue, topic, message_id, payload, attempts, last_error, created_at)
          SELECT CASE WHEN n % 2 = 0 THEN 'outbox' ELSE 'queue' END, NULL, 'page.test', 'page-' || n,
            '{}'::jsonb, 3, 'boom ' || n, now()
          FROM generate_series(1, 5) AS n
        `

        const first = yield* listDeadLetters("?limit=2")
        const second = yield* listDeadLetters(`?limit=2&before=${first.body.next}`)
        const outboxOnly = yield* listDeadLetters("?source=outbox")
        const discarded = yield* request("DELETE", `/v1/admin/dead-letters/${first.body.items[0].id}`, {
          key: adminKey
        })
        const gone = yield* request("GET", `/v1/admin/dead-letters/${first.body.items[0].id}`, { key: adminKey })

        expect(first.body.items.map((i: any) => i.messageId)).toEqual(["page-5", "page-4"])
        expect(first.body.total).toBe(5)
        expect(second.body.items.map((i: any) => i.messageId)).toEqual(["page-3", "page-2"])
        expect(outboxOnly.body.items.map((i: any) => i.messageId)).toEqual(["page-4", "page-2"])
        expect(discarded.status).toBe(204)
        expect(gone.status).toBe(404)
      }))

    it.effect("requires the admin key and rejects bad parameters precisely", () =>
      Effect.gen(function*() {
        const anonymous = yield* request("GET", "/v1/admin/dead-letters")
        const wrongKey = yield* request("POST", "/v1/admin/dead-letters/1/retry", { key: "gh_admin_wrong" })
        const badLimit = yield* listDeadLetters("?limit=0")
        const badId = yield* request("POST", "/v1/admin/dead-letters/abc/retry", { key: adminKey })

        expect(anonymous.status).toBe(401)
        expect(wrongKey.status).toBe(401)
        expect(badLimit.status).toBe(400)
        expect(badLimit.body.errors[0].path).toContain("limit")
        expect(badId.status).toBe(400)
      }))
  })
})
