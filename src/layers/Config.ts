import { Config, Context, Effect, Layer, LogLevel, type Option, type Redacted } from "effect"

/**
 * One documented setting: the environment variable, the default shown to operators and what it
 * controls. `--help` and the README table are generated from this list, so a setting that is
 * read is always documented.
 */
export interface Setting {
  readonly name: string
  readonly defaultValue: string
  readonly description: string
}

export const settings: Array<Setting> = []

const setting = <A>(
  name: string,
  defaultValue: string,
  description: string,
  make: (name: string) => Config.Config<A>
): Config.Config<A> => {
  settings.push({ name, defaultValue, description })
  return make(name).pipe(Config.withDescription(description))
}

const int = (fallback: number, min = 0) => (name: string) =>
  Config.integer(name).pipe(
    Config.withDefault(fallback),
    Config.validate({ message: `must be an integer >= ${min}`, validation: (n) => n >= min })
  )

const optionalSecret = (name: string) => Config.option(Config.redacted(name))

const config = Config.all({
  databaseUrl: setting(
    "DATABASE_URL",
    "(unset)",
    "PostgreSQL 15+ connection URL. Unset: start an embedded PostgreSQL server with its data under DATA_DIR.",
    optionalSecret
  ),
  host: setting(
    "HOST",
    "127.0.0.1",
    "Interface the HTTP server binds to (0.0.0.0 for devices on the network).",
    (n) => Config.string(n).pipe(Config.withDefault("127.0.0.1"))
  ),
  port: setting(
    "PORT",
    "8080",
    "HTTP port; 0 picks a free port.",
    (n) =>
      Config.integer(n).pipe(
        Config.withDefault(8080),
        Config.validate({ message: "must be a port number from 0 to 65535", validation: (p) => p >= 0 && p <= 65535 })
      )
  ),
  logLevel: setting(
    "LOG_LEVEL",
    "info",
    "Minimum log level: trace, debug, info, warning, error, fatal or none.",
    (n) => Config.logLevel(n).pipe(Config.withDefault(LogLevel.Info))
  ),
  logFormat: setting(
    "LOG_FORMAT",
    "auto",
    "Log format: json, pretty, or auto (pretty on a terminal, json otherwise).",
    (n) => Config.literal("auto", "json", "pretty")(n).pipe(Config.withDefault("auto" as const))
  ),
  dataDir: setting(
    "DATA_DIR",
    "./data",
    "Folder for the embedded database and generated secrets (owner-only permissions).",
    (n) => Config.string(n).pipe(Config.withDefault("./data"))
  ),
  dbPoolSize: setting("DB_POOL_SIZE", "10", "Maximum PostgreSQL connections per process.", int(10, 2)),
  dbConnectTimeoutMs: setting(
    "DB_CONNECT_TIMEOUT_MS",
    "5000",
    "Milliseconds to open a connection or wait for a free one in the pool; then a retryable error.",
    int(5000, 100)
  ),
  dbStartupTimeoutMs: setting(
    "DB_STARTUP_TIMEOUT_MS",
    "30000",
    "Milliseconds to keep retrying an unreachable database at start before exiting with an error.",
    int(30_000, 0)
  ),
  shutdownGraceMs: setting(
    "SHUTDOWN_GRACE_MS",
    "10000",
    "Milliseconds that in-flight requests and jobs get to finish after SIGTERM before the process exits.",
    int(10_000, 0)
  ),
  maxBodyBytes: setting(
    "MAX_BODY_BYTES",
    "1048576",
    "Largest accepted request body in bytes; larger bodies get 413 before parsing.",
    int(1_048_576, 1024)
  ),
  adminKey: setting(
    "ADMIN_KEY",
    "(generated)",
    "Admin API key. Unset: generated once, kept in DATA_DIR/secrets.json and printed at first start.",
    optionalSecret
  ),
  masterKey: setting(
    "MASTER_KEY",
    "(generated)",
    "Base64 of 32 random bytes that wraps every person's template data key. Unset: generated once into DATA_DIR/secrets.json.",
    optionalSecret
  )
})

export interface AppConfigShape {
  readonly databaseUrl: Option.Option<Redacted.Redacted>
  readonly host: string
  readonly port: number
  readonly logLevel: LogLevel.LogLevel
  readonly logFormat: "auto" | "json" | "pretty"
  readonly dataDir: string
  readonly dbPoolSize: number
  readonly dbConnectTimeoutMs: number
  readonly dbStartupTimeoutMs: number
  readonly shutdownGraceMs: number
  readonly maxBodyBytes: number
  readonly adminKey: Option.Option<Redacted.Redacted>
  readonly masterKey: Option.Option<Redacted.Redacted>
}

/** The whole configuration of a Gatehouse process, read once from the environment. */
export class AppConfig extends Context.Tag("gatehouse/AppConfig")<AppConfig, AppConfigShape>() {
  static readonly config: Config.Config<AppConfigShape> = config
  static readonly layer = Layer.effect(AppConfig, config)
  static readonly make = (overrides: Partial<AppConfigShape> = {}) =>
    Layer.effect(AppConfig, Effect.map(config, (c) => ({ ...c, ...overrides })))
}

/** Text for `--help`: every setting with its default. */
export const helpText = (): string => {
  const width = Math.max(...settings.map((s) => s.name.length))
  const lines = settings.map((s) => `  ${s.name.padEnd(width)}  ${s.description} Default: ${s.defaultValue}.`)
  return [
    "Gatehouse: face-based venue admission backend.",
    "",
    "Usage: npm start [-- --help]",
    "",
    "Configuration (environment variables):",
    ...lines
  ].join("\n")
}

/** Markdown table of settings, kept in the README. */
export const markdownTable = (): string =>
  [
    "| Variable | Default | Description |",
    "| --- | --- | --- |",
    ...settings.map((s) => `| \`${s.name}\` | \`${s.defaultValue}\` | ${s.description} |`)
  ].join("\n")
