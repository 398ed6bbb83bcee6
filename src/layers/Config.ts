import { Config, ConfigError, Context, Effect, Either, Layer, LogLevel, type Option, type Redacted } from "effect"
import { redeliveryHorizonMs } from "../domain/Backoff.js"

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

const levelNames = "all, trace, debug, info, warn or warning, error, fatal, none"

/**
 * Effect's log levels by their labels, also accepting `warning` (as syslog and most loggers
 * spell it) for `warn`, which is the only spelling `Config.logLevel` takes.
 */
const logLevel = (name: string) =>
  Config.string(name).pipe(Config.mapOrFail((value) => {
    const label = value.trim().toUpperCase()
    const level = LogLevel.allLevels.find((l) => l.label === (label === "WARNING" ? "WARN" : label))
    return level === undefined
      ? Either.left(ConfigError.InvalidData([], `Expected a log level (${levelNames}) but received "${value}"`))
      : Either.right(level)
  }))

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
    "Minimum log level: all, trace, debug, info, warn (or warning), error, fatal or none; any letter case.",
    (n) => logLevel(n).pipe(Config.withDefault(LogLevel.Info))
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
    "4194304",
    "Largest accepted request body in bytes; larger bodies get 413 before parsing. The default fits a full device-message batch (100 enrollments of two 512-dimension templates take about 2 MB).",
    int(4_194_304, 1024)
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
  ),
  ticketProviderUrl: setting(
    "TICKET_PROVIDER_URL",
    "(unset)",
    "Base URL of the pretix-style ticketing API, organizer included (http://host/api/v1/organizers/ORG). Unset: ticket sync is disabled.",
    (n) => Config.option(Config.url(n))
  ),
  ticketProviderToken: setting(
    "TICKET_PROVIDER_TOKEN",
    "(unset)",
    "API token sent to the ticketing provider as `Authorization: Token ...`.",
    optionalSecret
  ),
  ticketProviderTimeoutMs: setting(
    "TICKET_PROVIDER_TIMEOUT_MS",
    "5000",
    "Milliseconds one provider request (connect, answer and body) may take before it counts as failed.",
    int(5000, 1)
  ),
  ticketProviderRetries: setting(
    "TICKET_PROVIDER_RETRIES",
    "3",
    "Retries of a provider request that failed transiently (unreachable, 5xx, 429), with exponential backoff and jitter.",
    int(3, 0)
  ),
  ticketProviderRetryBaseMs: setting(
    "TICKET_PROVIDER_RETRY_BASE_MS",
    "200",
    "Milliseconds before the first retry; each further retry waits about twice as long (jittered).",
    int(200, 1)
  ),
  ticketProviderRetryAfterMaxMs: setting(
    "TICKET_PROVIDER_RETRY_AFTER_MAX_MS",
    "30000",
    "Longest Retry-After (milliseconds) waited within one call; a longer one ends the call as rate limited.",
    int(30_000, 0)
  ),
  ticketProviderConcurrency: setting(
    "TICKET_PROVIDER_CONCURRENCY",
    "4",
    "Provider requests in flight at once per process.",
    int(4, 1)
  ),
  ticketProviderBreakerFailures: setting(
    "TICKET_PROVIDER_BREAKER_FAILURES",
    "5",
    "Consecutive failed provider requests that open the circuit breaker.",
    int(5, 1)
  ),
  ticketProviderBreakerOpenMs: setting(
    "TICKET_PROVIDER_BREAKER_OPEN_MS",
    "30000",
    "Milliseconds the open breaker rejects provider requests before it lets probes through.",
    int(30_000, 1)
  ),
  ticketProviderBreakerProbes: setting(
    "TICKET_PROVIDER_BREAKER_PROBES",
    "2",
    "Probe requests a half-open breaker admits; as many successes close it, one failure opens it again.",
    int(2, 1)
  ),
  ticketSyncIntervalMs: setting(
    "TICKET_SYNC_INTERVAL_MS",
    "30000",
    "Milliseconds between ticket sync runs of one mapped event (jittered).",
    int(30_000, 10)
  ),
  ticketSyncPageSize: setting(
    "TICKET_SYNC_PAGE_SIZE",
    "100",
    "Tickets requested per provider page.",
    int(100, 1)
  ),
  ticketSyncOverlapMs: setting(
    "TICKET_SYNC_OVERLAP_MS",
    "5000",
    "Milliseconds before the sync cursor that each run reads again, for changes the provider commits late.",
    int(5000, 0)
  ),
  ticketSyncLeaseMs: setting(
    "TICKET_SYNC_LEASE_MS",
    "15000",
    "Milliseconds an instance's claim on an event's sync run lasts unless renewed (the running instance renews it " +
      "every third of that); after a crash, other instances wait this long before syncing the event.",
    int(15000, 1000)
  ),
  checkinWritebackBatchSize: setting(
    "CHECKIN_WRITEBACK_BATCH_SIZE",
    "20",
    "Gate check-ins claimed at once for writing back to the ticketing provider (sent at most TICKET_PROVIDER_CONCURRENCY at a time).",
    int(20, 1)
  ),
  checkinWritebackMaxAttempts: setting(
    "CHECKIN_WRITEBACK_MAX_ATTEMPTS",
    "20",
    "Attempts at a check-in write-back that the provider refuses (4xx) or answers malformed before it is parked as a dead letter. An unreachable provider or an open breaker never counts: write-backs then wait as long as the outage lasts.",
    int(20, 1)
  ),
  checkinWritebackPauseMaxMs: setting(
    "CHECKIN_WRITEBACK_PAUSE_MAX_MS",
    "30000",
    "Longest pause in milliseconds between two write-back rounds while the provider is unreachable (from 1 s, doubling, jittered); an open breaker pauses the rounds until it half-opens.",
    int(30_000, 10)
  ),
  inboxRetentionHours: setting(
    "INBOX_RETENTION_HOURS",
    "168",
    "Hours a processed message is remembered: a copy arriving later runs again. Must exceed every redelivery horizon.",
    int(168, 1)
  ),
  inboxClaimLeaseMs: setting(
    "INBOX_CLAIM_LEASE_MS",
    "30000",
    "Milliseconds after which a message claim whose holder died (no open transaction) may be taken over.",
    int(30_000, 100)
  ),
  inboxWaitMs: setting(
    "INBOX_WAIT_MS",
    "5000",
    "Milliseconds a caller that chose to wait for a concurrent copy of its message waits before giving up.",
    int(5000, 0)
  ),
  inboxRetentionBatchSize: setting(
    "INBOX_RETENTION_BATCH_SIZE",
    "500",
    "Processed messages deleted per statement by the retention loop (small batches keep locks short).",
    int(500, 1)
  ),
  inboxRetentionIntervalMs: setting(
    "INBOX_RETENTION_INTERVAL_MS",
    "60000",
    "Milliseconds between two passes of the inbox retention loop.",
    int(60_000, 100)
  ),
  personRetentionDays: setting(
    "PERSON_RETENTION_DAYS",
    "1095",
    "Days after a person's last interaction (enrollment, template, consent, identification) after which the retention job erases them.",
    int(1095, 1)
  ),
  consentWithdrawnRetentionHours: setting(
    "CONSENT_WITHDRAWN_RETENTION_HOURS",
    "0",
    "Hours after consent is withdrawn (or expires) before the retention job erases the person; 0 erases at its next pass.",
    int(0, 0)
  ),
  retentionIntervalMs: setting(
    "RETENTION_INTERVAL_MS",
    "3600000",
    "Milliseconds between two passes of the person retention job.",
    int(3_600_000, 100)
  ),
  retentionBatchSize: setting(
    "RETENTION_BATCH_SIZE",
    "100",
    "People the retention job reads per pass; each is erased in its own short transaction.",
    int(100, 1)
  ),
  maxTemplatesPerPerson: setting(
    "MAX_TEMPLATES_PER_PERSON",
    "5",
    "Most templates one person may hold; more are refused with TemplateLimitReached.",
    int(5, 1)
  ),
  deviceBatchMaxMessages: setting(
    "DEVICE_BATCH_MAX_MESSAGES",
    "100",
    "Most messages in one POST /v1/device-messages batch; a larger batch is refused whole with 413 BatchTooLarge.",
    int(100, 1)
  ),
  matchingPollMs: setting(
    "MATCHING_POLL_MS",
    "5000",
    "Milliseconds between checks of every in-memory gallery against the database, the backstop when a change announcement is lost; also the longest a consent withdrawal in another instance stays visible here.",
    int(5000, 10)
  ),
  matchingGraceMs: setting(
    "MATCHING_HOLD_AFTER_END_MS",
    "86400000",
    "Milliseconds after an event ends that its gallery stays in memory, for late and offline identifications.",
    int(86_400_000, 0)
  ),
  queueConcurrency: setting(
    "QUEUE_CONCURRENCY",
    "4",
    "Work queue batches processed at once per process, each in its own transaction (0 runs no workers).",
    int(4, 0)
  ),
  queueBatchSize: setting(
    "QUEUE_BATCH_SIZE",
    "32",
    "Jobs a worker claims at once and completes in one transaction; a failing message is rolled back alone (savepoints). At most 64 is best.",
    int(32, 1)
  ),
  queueLeaseMs: setting(
    "QUEUE_LEASE_MS",
    "30000",
    "Milliseconds a claimed job stays reserved without a heartbeat; then another worker may take it over. Also the longest a handler may pause between two statements of its batch's transaction.",
    int(30_000, 500)
  ),
  queuePollIntervalMs: setting(
    "QUEUE_POLL_INTERVAL_MS",
    "1000",
    "Milliseconds between polls of the work queue and the outbox when no notification arrives (backstop for LISTEN/NOTIFY); also the lease reaper's period.",
    int(1000, 10)
  ),
  queueMaxAttempts: setting(
    "QUEUE_MAX_ATTEMPTS",
    "10",
    "Attempts at a job (including ones cut short by a crash) before it is parked as a dead letter.",
    int(10, 1)
  ),
  queueBackoffBaseMs: setting(
    "QUEUE_BACKOFF_BASE_MS",
    "1000",
    "Milliseconds before a failed job's second attempt; doubles per attempt, with jitter.",
    int(1000, 1)
  ),
  queueBackoffMaxMs: setting(
    "QUEUE_BACKOFF_MAX_MS",
    "600000",
    "Largest delay in milliseconds between two attempts at a job.",
    int(600_000, 1)
  ),
  outboxRelayBatch: setting(
    "OUTBOX_RELAY_BATCH",
    "200",
    "Outbox rows the relay claims and delivers in one transaction.",
    int(200, 1)
  ),
  outboxMaxAttempts: setting(
    "OUTBOX_MAX_ATTEMPTS",
    "12",
    "Delivery attempts of an outbox row before it is parked as a dead letter.",
    int(12, 1)
  ),
  outboxBackoffBaseMs: setting(
    "OUTBOX_BACKOFF_BASE_MS",
    "500",
    "Milliseconds before an outbox row's second delivery attempt; doubles per attempt, with jitter.",
    int(500, 1)
  ),
  outboxBackoffMaxMs: setting(
    "OUTBOX_BACKOFF_MAX_MS",
    "600000",
    "Largest delay in milliseconds between two delivery attempts of an outbox row.",
    int(600_000, 1)
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
  readonly ticketProviderUrl: Option.Option<URL>
  readonly ticketProviderToken: Option.Option<Redacted.Redacted>
  readonly ticketProviderTimeoutMs: number
  readonly ticketProviderRetries: number
  readonly ticketProviderRetryBaseMs: number
  readonly ticketProviderRetryAfterMaxMs: number
  readonly ticketProviderConcurrency: number
  readonly ticketProviderBreakerFailures: number
  readonly ticketProviderBreakerOpenMs: number
  readonly ticketProviderBreakerProbes: number
  readonly ticketSyncIntervalMs: number
  readonly ticketSyncPageSize: number
  readonly ticketSyncOverlapMs: number
  readonly ticketSyncLeaseMs: number
  readonly checkinWritebackBatchSize: number
  readonly checkinWritebackMaxAttempts: number
  readonly checkinWritebackPauseMaxMs: number
  readonly inboxRetentionHours: number
  readonly inboxClaimLeaseMs: number
  readonly inboxWaitMs: number
  readonly inboxRetentionBatchSize: number
  readonly inboxRetentionIntervalMs: number
  readonly personRetentionDays: number
  readonly consentWithdrawnRetentionHours: number
  readonly retentionIntervalMs: number
  readonly retentionBatchSize: number
  readonly maxTemplatesPerPerson: number
  readonly deviceBatchMaxMessages: number
  readonly matchingPollMs: number
  readonly matchingGraceMs: number
  readonly queueConcurrency: number
  readonly queueBatchSize: number
  readonly queueLeaseMs: number
  readonly queuePollIntervalMs: number
  readonly queueMaxAttempts: number
  readonly queueBackoffBaseMs: number
  readonly queueBackoffMaxMs: number
  readonly outboxRelayBatch: number
  readonly outboxMaxAttempts: number
  readonly outboxBackoffBaseMs: number
  readonly outboxBackoffMaxMs: number
}

/** The whole configuration of a Gatehouse process, read once from the environment. */
export class AppConfig extends Context.Tag("gatehouse/AppConfig")<AppConfig, AppConfigShape>() {
  static readonly config: Config.Config<AppConfigShape> = config
  static readonly layer = Layer.effect(AppConfig, config)
  static readonly make = (overrides: Partial<AppConfigShape> = {}) =>
    Layer.effect(AppConfig, Effect.map(config, (c) => ({ ...c, ...overrides })))
}

/** How long after its first delivery a message may still arrive again, and why. */
export interface RedeliveryHorizon {
  readonly source: string
  readonly ms: number
}

/**
 * The longest time after a first delivery at which each source may deliver a copy of the same
 * message, under this configuration. The inbox refuses to start unless its retention window is
 * longer than each of them, because a copy arriving after its record was deleted runs again.
 * A component that redelivers (queue, relay, device uploads) adds its horizon here.
 */
export const redeliveryHorizons = (config: AppConfigShape): ReadonlyArray<RedeliveryHorizon> => [
  { source: "INBOX_CLAIM_LEASE_MS (an abandoned claim is taken over after it)", ms: config.inboxClaimLeaseMs },
  {
    source: "QUEUE_MAX_ATTEMPTS, QUEUE_BACKOFF_*_MS and QUEUE_LEASE_MS (a job's retries, each possibly after a lease)",
    ms: redeliveryHorizonMs(
      { baseMs: config.queueBackoffBaseMs, maxMs: config.queueBackoffMaxMs },
      config.queueMaxAttempts
    ) +
      config.queueMaxAttempts * config.queueLeaseMs
  },
  {
    source:
      "CHECKIN_WRITEBACK_MAX_ATTEMPTS, QUEUE_BACKOFF_*_MS and QUEUE_LEASE_MS (a refused check-in write-back's retries)",
    ms: redeliveryHorizonMs(
      { baseMs: config.queueBackoffBaseMs, maxMs: config.queueBackoffMaxMs },
      config.checkinWritebackMaxAttempts
    ) +
      config.checkinWritebackMaxAttempts * config.queueLeaseMs
  },
  {
    source: "OUTBOX_MAX_ATTEMPTS and OUTBOX_BACKOFF_*_MS (an event's delivery retries)",
    ms: redeliveryHorizonMs(
      { baseMs: config.outboxBackoffBaseMs, maxMs: config.outboxBackoffMaxMs },
      config.outboxMaxAttempts
    )
  }
]

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
