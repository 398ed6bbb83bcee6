import { HttpServer } from "@effect/platform"
import { Effect, Layer } from "effect"
import { ServerLive } from "../../src/layers/App.js"
import { AppConfig, type AppConfigShape } from "../../src/layers/Config.js"
import { Secrets } from "../../src/layers/Secrets.js"
import { TestDatabaseLive } from "./Database.js"

export const adminKey = "gh_admin_test"

/**
 * The whole service on a fresh test database, listening on a free loopback port, with the test
 * secrets (`adminKey`). Tests talk to it over real HTTP.
 */
export const TestServerLive = (overrides: Partial<AppConfigShape> = {}) =>
  ServerLive.pipe(
    Layer.provideMerge(TestDatabaseLive),
    Layer.provide(Secrets.layerTest),
    Layer.provideMerge(AppConfig.make({ port: 0, host: "127.0.0.1", ...overrides }))
  )

/** Base URL of the test server. */
export const baseUrl = Effect.map(HttpServer.HttpServer, (server) => {
  const address = server.address as HttpServer.TcpAddress
  return `http://127.0.0.1:${address.port}`
})
