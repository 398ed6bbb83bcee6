import { Effect, Layer, Logger } from "effect"
import { AppConfig } from "./Config.js"

/** JSON logs when not on a terminal (or LOG_FORMAT=json), pretty logs on one; level from LOG_LEVEL. */
export const LoggingLive = Layer.unwrapEffect(Effect.map(AppConfig, (config) => {
  const json = config.logFormat === "json" || (config.logFormat === "auto" && !process.stdout.isTTY)
  return Layer.merge(json ? Logger.json : Logger.pretty, Logger.minimumLogLevel(config.logLevel))
}))
