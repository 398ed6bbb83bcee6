import { PgClient } from "@effect/sql-pg"
import { Context, Data, Deferred, Duration, Effect, Exit, FiberId, Layer, Redacted, Schedule } from "effect"
import Pg from "pg"
import { Health } from "./Health.js"
import { supervised } from "./Supervisor.js"

/** Notification channels of the process; `pg_notify` on one of them wakes this process's waiters. */
export const channels = {
  /** A job became ready; the payload is the queue name. */
  jobs: "gatehouse_jobs",
  /** An outbox row was appended. */
  outbox: "gatehouse_outbox"
} as const

export type Channel = (typeof channels)[keyof typeof channels]

export class ListenerDisconnected extends Data.TaggedError("ListenerDisconnected")<{ readonly cause: unknown }> {
  override get message() {
    return `the LISTEN connection was lost: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

export interface ListenerShape {
  /**
   * Completes at the next notification on `channel` or after `timeout`, whichever comes first.
   * Wake-ups may be spurious (a notification for another queue); callers look for work anyway.
   */
  readonly wait: (channel: Channel, timeout: Duration.DurationInput) => Effect.Effect<void>
  /** Wakes this process's waiters on `channel` without a round trip to the database. */
  readonly wake: (channel: Channel) => Effect.Effect<void>
}

export interface ListenerOptions {
  /** How often the LISTEN connection is probed with a query, to notice a connection that died quietly. */
  readonly probeInterval: Duration.DurationInput
}

/**
 * One LISTEN connection per process, separate from the pool. `PgClient.listen` cannot be used:
 * when its connection dies the stream stays open and silently receives nothing. Here a lost
 * connection (an error, the end of the socket, or a probe query that fails or hangs) fails the
 * loop, the supervisor restarts it, and every waiter is woken after re-listening because
 * notifications sent in between are lost. Pollers keep working meanwhile: waits always time out.
 */
export class Listener extends Context.Tag("gatehouse/Listener")<Listener, ListenerShape>() {
  static readonly layer = (options: ListenerOptions = { probeInterval: "5 seconds" }) =>
    Layer.scoped(
      Listener,
      Effect.gen(function*() {
        const pg = yield* PgClient.PgClient
        const signals = new Map<string, Deferred.Deferred<void>>()

        const current = (channel: string) => {
          let signal = signals.get(channel)
          if (signal === undefined) {
            signal = Deferred.unsafeMake<void>(FiberId.none)
            signals.set(channel, signal)
          }
          return signal
        }
        const signal = (channel: string) => {
          const previous = signals.get(channel)
          if (previous === undefined) return
          signals.delete(channel)
          Deferred.unsafeDone(previous, Exit.void)
        }

        const wait = (channel: Channel, timeout: Duration.DurationInput) =>
          Effect.suspend(() => Deferred.await(current(channel))).pipe(Effect.timeoutOption(timeout), Effect.asVoid)
        const wake = (channel: Channel) => Effect.sync(() => signal(channel))

        const session = Effect.gen(function*() {
          const health = yield* Health
          const lost = yield* Deferred.make<never, ListenerDisconnected>()
          const client = yield* Effect.acquireRelease(
            Effect.tryPromise({
              try: async () => {
                const client = new Pg.Client({
                  ...connectionOptions(pg.config),
                  application_name: "gatehouse-listener",
                  keepAlive: true
                })
                client.on("error", (cause) => Deferred.unsafeDone(lost, Exit.fail(new ListenerDisconnected({ cause }))))
                client.on("end", () =>
                  Deferred.unsafeDone(lost, Exit.fail(new ListenerDisconnected({ cause: "connection ended" }))))
                client.on("notification", (message) =>
                  signal(message.channel))
                await client.connect()
                return client
              },
              catch: (cause) => new ListenerDisconnected({ cause })
            }),
            // A release runs uninterruptibly, where a timeout would still wait for `end()`, which
            // never settles on a connection whose server stopped answering: only an interruptible
            // wait can be cut at the limit (the socket is then left to the process's exit).
            (client) =>
              Effect.promise(() => client.end().catch(() => undefined)).pipe(
                Effect.interruptible,
                Effect.timeoutOption(1000)
              )
          )
          const query = (text: string) =>
            Effect.tryPromise({ try: () => client.query(text), catch: (cause) => new ListenerDisconnected({ cause }) })

          for (const channel of Object.values(channels)) {
            yield* query(`LISTEN ${Pg.escapeIdentifier(channel)}`)
          }
          yield* health.set("listener", "up")
          for (const channel of Object.values(channels)) signal(channel)

          const probe = query("SELECT 1").pipe(
            Effect.timeoutFail({
              duration: "5 seconds",
              onTimeout: () => new ListenerDisconnected({ cause: "probe query timed out" })
            }),
            Effect.repeat(Schedule.spaced(options.probeInterval))
          )
          return yield* Effect.raceFirst(Deferred.await(lost), probe)
        }).pipe(Effect.scoped)

        yield* supervised("listener", session)
        return { wait, wake }
      })
    )
}

/** Connection settings of a separate `pg` client equal to the pool's. */
const connectionOptions = (config: PgClient.PgClientConfig): Pg.ClientConfig => {
  const options: Pg.ClientConfig = {}
  if (config.url !== undefined) options.connectionString = Redacted.value(config.url)
  if (config.host !== undefined) options.host = config.host
  if (config.port !== undefined) options.port = config.port
  if (config.database !== undefined) options.database = config.database
  if (config.username !== undefined) options.user = config.username
  if (config.password !== undefined) options.password = Redacted.value(config.password)
  if (config.connectTimeout !== undefined) {
    options.connectionTimeoutMillis = Duration.toMillis(Duration.decode(config.connectTimeout))
  }
  if (config.ssl !== undefined) options.ssl = config.ssl
  return options
}
