import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import { makeClient, retryable } from "../../src/sim/Client.js"
import { decodeSchedule } from "../../src/sim/Faults.js"
import { makeRng } from "../../src/sim/Random.js"
import { Stats } from "../../src/sim/Stats.js"

interface Seen {
  readonly key: string | undefined
  readonly path: string
}

/** A loopback server that answers from a script per path and records what it received. */
const scriptedServer = (
  script: (path: string, count: number) => { status: number; body: unknown; replayed?: boolean }
) =>
  Effect.acquireRelease(
    Effect.async<{ url: string; seen: Array<Seen> }>((resume) => {
      const seen: Array<Seen> = []
      const server = Http.createServer((req, res) => {
        req.resume()
        req.on("end", () => {
          seen.push({ key: req.headers["idempotency-key"] as string | undefined, path: req.url ?? "" })
          const count = seen.filter((s) => s.path === req.url).length
          const answer = script(req.url ?? "", count)
          res.writeHead(answer.status, {
            "content-type": "application/json",
            ...(answer.replayed === true ? { "idempotent-replayed": "true" } : {})
          })
          res.end(JSON.stringify(answer.body))
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as Net.AddressInfo).port
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, seen, server } as any))
      })
    }),
    (s: any) => Effect.promise(() => new Promise<void>((done) => s.server.close(() => done())))
  )

const client = (url: string, rates: object, stats = new Stats(), giveUpAfterMs = 10_000) =>
  makeClient({
    targets: () => [url],
    rates: decodeSchedule({ rates }).rates,
    stats,
    rng: makeRng("client"),
    attemptTimeoutMs: 2_000,
    giveUpAfterMs
  })

describe("simulated device client", () => {
  it("resends what is worth resending and nothing else", () => {
    expect(retryable(503, {})).toBe(true)
    expect(retryable(500, {})).toBe(true)
    expect(retryable(429, {})).toBe(true)
    expect(retryable(409, { code: "RequestInProgress" })).toBe(true)
    expect(retryable(409, { code: "ExternalRefTaken" })).toBe(false)
    expect(retryable(422, {})).toBe(false)
    expect(retryable(201, {})).toBe(false)
  })

  it.live("resends with the same Idempotency-Key after an answer is lost, and counts it", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer((_, n) => ({ status: 201, body: { n }, replayed: n > 1 }))
      const stats = new Stats()
      const device = client(server.url, { dropResponse: 0.5 }, stats)

      const replies = yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        (i) =>
          device.call({
            method: "POST",
            path: `/act/${i}`,
            body: { i },
            idempotencyKey: `key-${i}`,
            label: `act ${i}`,
            faults: true
          })
      )

      expect(replies.every((r) => r.status === 201)).toBe(true)
      expect(stats.get("responsesDropped")).toBeGreaterThan(0)
      expect(server.seen.length).toBe(20 + stats.get("responsesDropped"))
      for (const s of server.seen) expect(s.key).toBe(`key-${s.path.split("/")[2]}`)
    }).pipe(Effect.scoped))

  it.live("sends some requests twice at once", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer(() => ({ status: 200, body: {} }))
      const stats = new Stats()
      const device = client(server.url, { duplicate: 0.5 }, stats)

      yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
        device.call({
          method: "POST",
          path: `/dup/${i}`,
          idempotencyKey: `k${i}`,
          label: "dup",
          faults: true
        }))

      expect(stats.get("duplicatesSent")).toBeGreaterThan(0)
      expect(server.seen.length).toBe(20 + stats.get("duplicatesSent"))
    }).pipe(Effect.scoped))

  it.live("retries 503 and in-progress answers until a final one", () =>
    Effect.gen(function*() {
      const server = yield* scriptedServer((path, n) =>
        path === "/busy"
          ? n <= 2 ? { status: 409, body: { code: "RequestInProgress" } } : { status: 200, body: { ok: true } }
          : n <= 2
          ? { status: 503, body: {} }
          : { status: 200, body: { ok: true } }
      )
      const stats = new Stats()
      const c = client(server.url, {}, stats)

      const flaky = yield* c.call({ method: "GET", path: "/flaky", label: "flaky" })
      const busy = yield* c.call({ method: "POST", path: "/busy", idempotencyKey: "b", label: "busy" })

      expect(flaky).toMatchObject({ status: 200, attempts: 3 })
      expect(busy).toMatchObject({ status: 200, attempts: 3 })
      expect(stats.get("serverErrors")).toBe(2)
      expect(stats.get("inProgress")).toBe(2)
    }).pipe(Effect.scoped))

  it.live("gives up when no instance answers within its patience", () =>
    Effect.gen(function*() {
      const stats = new Stats()
      const c = client("http://127.0.0.1:9", {}, stats, 300)

      const exit = yield* Effect.exit(c.call({ method: "GET", path: "/", label: "nobody home" }))

      expect(Exit.isFailure(exit)).toBe(true)
      expect(stats.get("connectionErrors")).toBeGreaterThan(0)
      expect(stats.get("gaveUp")).toBe(1)
    }))
})
