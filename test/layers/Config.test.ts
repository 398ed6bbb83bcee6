import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Option } from "effect"
import * as Fs from "node:fs"
import { AppConfig, helpText, settings } from "../../src/layers/Config.js"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("AppConfig", () => {
  it.effect("has a default for every setting", () =>
    Effect.gen(function*() {
      const config = yield* AppConfig.config.pipe(withEnv({}))

      expect(config.port).toBe(8080)
      expect(Option.isNone(config.databaseUrl)).toBe(true)
      expect(config.shutdownGraceMs).toBe(10_000)
    }))

  it.effect("rejects an invalid value with the variable's name", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(AppConfig.config.pipe(withEnv({ DB_POOL_SIZE: "one" })))

      expect(String(error)).toContain("DB_POOL_SIZE")
    }))

  it("documents every setting in --help and in the README", () => {
    const readme = Fs.readFileSync("README.md", "utf8")

    for (const setting of settings) {
      expect(helpText()).toContain(setting.name)
      expect(readme).toContain(`\`${setting.name}\``)
    }
  })
})
