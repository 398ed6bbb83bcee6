import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Redacted, Scope } from "effect"
import * as Net from "node:net"
import { pgClientLayer } from "../../src/layers/Database.js"
import { Health } from "../../src/services/Health.js"
import { Listener } from "../../src/services/Listener.js"
import { freshDatabase } from "../support/Database.js"
import { eventually } from "../support/Eventually.js"

/**
 * A TCP proxy on loopback in front of the test database that can stop forwarding, as a server
 * that hangs (or a network that drops everything) looks to its clients: sockets stay open, and
 * nothing more arrives.
 */
const freezableProxy = (target: URL) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly freeze: () => void; readonly close: () => void }>((resume) => {
      const sockets = new Set<Net.Socket>()
      let frozen = false
      // Half-open allowed: a frozen proxy does not answer a client's goodbye (FIN) with its own.
      const server = Net.createServer({ allowHalfOpen: true }, (client) => {
        const upstream = Net.connect({ port: Number(target.port || 5432), host: target.hostname, allowHalfOpen: true })
        sockets.add(client).add(upstream)
        client.on("data", (chunk) => frozen || upstream.write(chunk))
        upstream.on("data", (chunk) => frozen || client.write(chunk))
        client.on("error", () => upstream.destroy())
        upstream.on("error", () => client.destroy())
        client.on("end", () => frozen || upstream.end())
        upstream.on("end", () => frozen || client.end())
        client.on("close", () => frozen || upstream.destroy())
        upstream.on("close", () => frozen || client.destroy())
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          port: (server.address() as Net.AddressInfo).port,
          freeze: () => {
            frozen = true
          },
          close: () => {
            server.close()
            for (const socket of sockets) socket.destroy()
          }
        })))
    }),
    (proxy) => Effect.sync(() => proxy.close())
  )

describe("Listener", () => {
  it.live("stops within its limit when the LISTEN connection's server stopped answering", () =>
    Effect.gen(function*() {
      const db = yield* freshDatabase
      const target = new URL(db.url)
      const proxy = yield* freezableProxy(target)
      const viaProxy = new URL(db.url)
      viaProxy.hostname = "127.0.0.1"
      viaProxy.port = String(proxy.port)
      const layer = Listener.layer({ probeInterval: "1 minute" }).pipe(
        Layer.provideMerge(Health.layer),
        Layer.provide(
          pgClientLayer({ url: Redacted.make(viaProxy.toString()), maxConnections: 2, connectTimeoutMs: 5000 })
            .pipe(Layer.orDie)
        )
      )
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(layer, scope)
      const health = Effect.provide(Health, context)
      yield* eventually(Effect.map(Effect.flatMap(health, (h) => h.snapshot), (s) => s.listener?.status === "up"))

      proxy.freeze()
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeoutOption("8 seconds"))

      // The release gives the connection one second to say goodbye, then lets it go.
      expect(Option.isSome(closed)).toBe(true)
    }).pipe(Effect.scoped), 30_000)
})
