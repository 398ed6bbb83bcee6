import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, LogLevel, Option } from "effect"
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

describe("LOG_LEVEL", () => {
  it.effect("accepts warn and warning as one level, in any letter case", () =>
    Effect.gen(function*() {
      const levels = yield* Effect.forEach(
        ["warn", "warning", "WARNING", " Warn "],
        (value) => Effect.map(AppConfig.config.pipe(withEnv({ LOG_LEVEL: value })), (c) => c.logLevel)
      )

      expect(levels).toEqual([LogLevel.Warning, LogLevel.Warning, LogLevel.Warning, LogLevel.Warning])
    }))

  it.effect("takes every Effect level by its name and defaults to info", () =>
    Effect.gen(function*() {
      const read = (value: string | undefined) =>
        Effect.map(
          AppConfig.config.pipe(withEnv(value === undefined ? {} : { LOG_LEVEL: value })),
          (c) => c.logLevel
        )

      expect(yield* read(undefined)).toBe(LogLevel.Info)
      for (const level of LogLevel.allLevels) expect(yield* read(level.label.toLowerCase())).toBe(level)
    }))

  it.effect("refuses an unknown level, naming the variable and the accepted names", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(AppConfig.config.pipe(withEnv({ LOG_LEVEL: "verbose" })))

      expect(String(error)).toContain("LOG_LEVEL")
      expect(String(error)).toContain("warning")
      expect(String(error)).toContain("verbose")
    }))

  it("describes the spelling the service accepts", () => {
    const setting = settings.find((s) => s.name === "LOG_LEVEL")!

    expect(setting.description).toContain("warn (or warning)")
  })
})
