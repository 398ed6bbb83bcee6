import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Context, Duration, Effect, FiberMap, Layer, Metric, Option } from "effect"
import * as Crypto from "node:crypto"
import { advance, continuation, EventNotMapped, type SyncCursor } from "../domain/Ticket.js"
import { AppConfig } from "../layers/Config.js"
import { ticketSyncInterval } from "../layers/Schedules.js"
import { retryTransient } from "./Database.js"
import { supervised } from "./Supervisor.js"
import { type ProviderError, TicketProvider } from "./TicketProvider.js"
import { Tickets } from "./Tickets.js"

export interface SyncReport {
  readonly eventId: string
  /** `busy`: another instance holds the event's sync lease; nothing was read. */
  readonly outcome: "synced" | "busy"
  readonly pages: number
  readonly inserted: number
  readonly updated: number
  readonly stale: number
  readonly linked: number
  readonly revoked: number
  readonly cursor: SyncCursor | null
}

export interface TicketSyncShape {
  /**
   * One sync run of a mapped event: reads the provider's feed from the stored cursor (less the
   * overlap window) to its end, page by page; each page and the cursor commit together, so a run
   * cut short resumes where it stopped. Fails with the provider's error when it cannot finish.
   */
  readonly syncEvent: (eventId: string) => Effect.Effect<SyncReport, ProviderError | EventNotMapped | SqlError>
  /** Starts the scheduled sync of an event in this instance now, rather than at the next discovery. */
  readonly schedule: (eventId: string) => Effect.Effect<void>
}

const runs = Metric.counter("gatehouse_ticket_sync_runs_total", {
  description: "Ticket sync runs by outcome (synced, busy, failed, circuit_open)",
  incremental: true
})
const ticketsApplied = Metric.counter("gatehouse_ticket_sync_tickets_total", {
  description: "Ticket snapshots read from the provider by result (inserted, updated, stale)",
  incremental: true
})
const linkChanges = Metric.counter("gatehouse_ticket_sync_links_total", {
  description: "Ticket links made or revoked by the sync",
  incremental: true
})

const tagged = <M extends Metric.Metric<any, any, any>>(metric: M, key: string, value: string): M =>
  Metric.tagged(metric, key, value) as M

/** A run stops after this many pages and goes on at the next run, so one huge feed cannot starve the others. */
const maxPagesPerRun = 1000

export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const provider = yield* TicketProvider
  const tickets = yield* Tickets
  const config = yield* AppConfig
  const owner = Crypto.randomUUID()
  // A run holds its event's lease for TICKET_SYNC_LEASE_MS and renews it every third of that while
  // it runs, however long a provider page takes; a crashed holder blocks others only that long.
  // Two runs of one event at once would be harmless (only newer snapshots apply and the cursor
  // only moves forward), so the lease saves work rather than guarding correctness.
  const leaseSeconds = config.ticketSyncLeaseMs / 1000
  const locks = new Map<string, Effect.Semaphore>()
  const lockOf = (eventId: string) => {
    let lock = locks.get(eventId)
    if (lock === undefined) {
      lock = Effect.unsafeMakeSemaphore(1)
      locks.set(eventId, lock)
    }
    return lock
  }

  const acquire = (eventId: string) =>
    Effect.gen(function*() {
      const rows = yield* sql<{ providerEvent: string; cursorModified: Date | null; cursorId: number | null }>`
        UPDATE event_provider_links
        SET lease_owner = ${owner}, lease_until = now() + make_interval(secs => ${leaseSeconds}),
            last_attempt_at = now()
        WHERE event_id = ${eventId} AND (lease_until IS NULL OR lease_until < now() OR lease_owner = ${owner})
        RETURNING provider_event AS "providerEvent", cursor_modified AS "cursorModified", cursor_id AS "cursorId"
      `
      const row = rows[0]
      if (row !== undefined) {
        const cursor: SyncCursor | undefined = row.cursorModified === null || row.cursorId === null
          ? undefined
          : { modified: row.cursorModified, providerId: row.cursorId }
        return Option.some({ providerEvent: row.providerEvent, cursor })
      }
      if (Option.isNone(yield* tickets.mapping(eventId))) return yield* new EventNotMapped({ eventId })
      return Option.none()
    })

  const release = (eventId: string) =>
    sql`
      UPDATE event_provider_links SET lease_owner = NULL, lease_until = NULL
      WHERE event_id = ${eventId} AND lease_owner = ${owner}
    `.pipe(retryTransient, Effect.ignore)

  /** Keeps the lease of a running run; never completes (the run it races ends it). */
  const renewLease = (eventId: string) =>
    sql`
      UPDATE event_provider_links SET lease_until = now() + make_interval(secs => ${leaseSeconds})
      WHERE event_id = ${eventId} AND lease_owner = ${owner}
    `.pipe(
      Effect.ignore,
      Effect.delay(Duration.millis(config.ticketSyncLeaseMs / 3)),
      Effect.forever
    )

  const recordFailure = (eventId: string, error: ProviderError | SqlError | EventNotMapped) =>
    sql`
      UPDATE event_provider_links SET last_error = ${error.message.slice(0, 500)}
      WHERE event_id = ${eventId}
    `.pipe(retryTransient, Effect.ignore)

  /** Applies one page and moves the cursor in one transaction: a page is never half-applied. */
  const commitPage = (
    eventId: string,
    providerEvent: string,
    page: Parameters<typeof tickets.apply>[2],
    cursor: SyncCursor | undefined
  ) =>
    sql.withTransaction(Effect.gen(function*() {
      const applied = yield* tickets.apply(eventId, providerEvent, page)
      if (cursor !== undefined) {
        yield* sql`
          UPDATE event_provider_links
          SET cursor_modified = ${cursor.modified}, cursor_id = ${cursor.providerId}
          WHERE event_id = ${eventId}
            AND (cursor_modified IS NULL
              OR (cursor_modified, cursor_id) < (${cursor.modified}::timestamptz, ${cursor.providerId}::bigint))
        `
      }
      yield* sql`
        UPDATE event_provider_links SET lease_until = now() + make_interval(secs => ${leaseSeconds})
        WHERE event_id = ${eventId} AND lease_owner = ${owner}
      `
      return applied
    })).pipe(retryTransient)

  const walk = (eventId: string, providerEvent: string, start: SyncCursor | undefined) =>
    Effect.gen(function*() {
      const totals = { pages: 0, inserted: 0, updated: 0, stale: 0, linked: 0, revoked: 0 }
      let cursor = start
      // Read again a window before the cursor: changes the provider commits late carry older
      // timestamps. Replays are harmless, since only newer snapshots are applied.
      let query: { modifiedSince?: Date | undefined; pageUrl?: string | undefined } = {
        modifiedSince: start === undefined ? undefined : new Date(start.modified.getTime() - config.ticketSyncOverlapMs)
      }
      while (totals.pages < maxPagesPerRun) {
        const page = yield* provider.tickets(providerEvent, query)
        cursor = advance(cursor, page.tickets)
        const applied = yield* commitPage(eventId, providerEvent, page.tickets, cursor)
        totals.pages += 1
        totals.inserted += applied.inserted
        totals.updated += applied.updated
        totals.stale += applied.stale
        totals.linked += applied.linked
        totals.revoked += applied.revoked
        if (page.next === undefined) break
        const next = continuation(page.tickets)
        if (next === "done") break
        query = next === "follow-next"
          ? { pageUrl: page.next }
          : { modifiedSince: page.tickets[page.tickets.length - 1]!.modified }
      }
      // People enrolled since the last run whose reference matches a ticket nobody holds yet.
      totals.linked += yield* retryTransient(tickets.linkHolders(eventId))
      return { ...totals, cursor }
    })

  const syncEvent = (eventId: string) =>
    lockOf(eventId).withPermits(1)(
      Effect.gen(function*() {
        const lease = yield* retryTransient(acquire(eventId))
        if (Option.isNone(lease)) {
          yield* Metric.increment(tagged(runs, "outcome", "busy"))
          return {
            eventId,
            outcome: "busy",
            pages: 0,
            inserted: 0,
            updated: 0,
            stale: 0,
            linked: 0,
            revoked: 0,
            cursor: null
          } satisfies SyncReport
        }
        const totals = yield* walk(eventId, lease.value.providerEvent, lease.value.cursor).pipe(
          Effect.raceFirst(renewLease(eventId)),
          Effect.tapError((error) => recordFailure(eventId, error)),
          Effect.ensuring(release(eventId))
        )
        yield* retryTransient(sql`
          UPDATE event_provider_links SET last_success_at = now(), last_error = NULL WHERE event_id = ${eventId}
        `)
        yield* Metric.increment(tagged(runs, "outcome", "synced"))
        yield* Metric.incrementBy(tagged(ticketsApplied, "result", "inserted"), totals.inserted)
        yield* Metric.incrementBy(tagged(ticketsApplied, "result", "updated"), totals.updated)
        yield* Metric.incrementBy(tagged(ticketsApplied, "result", "stale"), totals.stale)
        yield* Metric.incrementBy(tagged(linkChanges, "change", "linked"), totals.linked)
        yield* Metric.incrementBy(tagged(linkChanges, "change", "revoked"), totals.revoked)
        return { eventId, outcome: "synced", ...totals, cursor: totals.cursor ?? null } satisfies SyncReport
      })
    ).pipe(
      Effect.tapError((error) =>
        Metric.increment(tagged(
          runs,
          "outcome",
          error._tag === "ProviderUnavailable" && error.circuitOpen ? "circuit_open" : "failed"
        ))
      ),
      Effect.annotateLogs({ component: "ticketing", eventId }),
      Effect.withSpan("TicketSync.syncEvent", { attributes: { eventId } })
    )

  /**
   * One scheduled run: never fails, so the provider being down can never stop the loop or mark
   * the service unready. Answers whether the event is still mapped.
   */
  const scheduledRun = (eventId: string) =>
    syncEvent(eventId).pipe(
      Effect.as(true),
      Effect.catchAll((error) => {
        if (error._tag === "EventNotMapped") return Effect.succeed(false)
        const log = error._tag === "ProviderUnavailable" && error.circuitOpen ? Effect.logDebug : Effect.logWarning
        return Effect.as(
          log(error._tag === "SqlError" ? "ticket sync failed on the database" : "ticket sync failed").pipe(
            Effect.annotateLogs({ component: "ticketing", eventId, error: error.message })
          ),
          true
        )
      }),
      Effect.catchAllCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : Effect.as(
          Effect.logError("ticket sync run failed unexpectedly", cause).pipe(
            Effect.annotateLogs({ component: "ticketing", eventId })
          ),
          true
        )
      )
    )

  return { syncEvent, scheduledRun }
})

/** Ticket sync: on demand (`syncEvent`) and, with a provider configured, on a schedule per mapped event. */
export class TicketSync extends Context.Tag("gatehouse/TicketSync")<TicketSync, TicketSyncShape>() {
  static readonly layer = Layer.scoped(
    TicketSync,
    Effect.gen(function*() {
      const { scheduledRun, syncEvent } = yield* make
      const provider = yield* TicketProvider
      const tickets = yield* Tickets
      const config = yield* AppConfig
      const loops = yield* FiberMap.make<string>()

      const eventLoop = (eventId: string) =>
        Effect.repeat(scheduledRun(eventId), {
          schedule: ticketSyncInterval(config.ticketSyncIntervalMs),
          while: (stillMapped) => stillMapped
        })

      const schedule = (eventId: string) =>
        provider.configured
          ? Effect.asVoid(FiberMap.run(loops, eventId, eventLoop(eventId), { onlyIfMissing: true }))
          : Effect.void

      if (provider.configured) {
        // Discovery: events mapped by other instances, or before this one started.
        yield* supervised(
          "ticket-sync",
          Effect.forever(
            tickets.mappedEvents.pipe(
              Effect.flatMap((ids) => Effect.forEach(ids, schedule, { discard: true })),
              Effect.catchAll((error) =>
                Effect.logWarning("ticket sync discovery failed").pipe(
                  Effect.annotateLogs({ component: "ticketing", error: error.message })
                )
              ),
              Effect.zipRight(Effect.sleep(config.ticketSyncIntervalMs))
            )
          )
        )
      }

      return { syncEvent, schedule }
    })
  )
}
