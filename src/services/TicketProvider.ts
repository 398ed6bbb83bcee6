import { HttpApiSchema, HttpClient, HttpClientRequest, type HttpClientResponse } from "@effect/platform"
import { Context, Duration, Effect, Layer, Metric, Option, ParseResult, Predicate, Redacted, Schema } from "effect"
import type { ProviderTicket, TicketStatus } from "../domain/Ticket.js"
import { AppConfig } from "../layers/Config.js"
import { providerRetry } from "../layers/Schedules.js"
import * as CircuitBreaker from "./CircuitBreaker.js"
import { Health } from "./Health.js"

// ---- errors

/** The provider could not be reached, answered 5xx, timed out, or the breaker is open. */
export class ProviderUnavailable extends Schema.TaggedError<ProviderUnavailable>()(
  "ProviderUnavailable",
  {
    detail: Schema.String,
    /** The breaker rejected the call without sending it. */
    circuitOpen: Schema.optionalWith(Schema.Boolean, { default: () => false })
  },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return this.detail
  }
}

/** The provider refused the request (4xx other than 429): bad token, unknown event. Not retried. */
export class ProviderRejected extends Schema.TaggedError<ProviderRejected>()(
  "ProviderRejected",
  { detail: Schema.String, status: Schema.Number },
  HttpApiSchema.annotations({ status: 502 })
) {
  override get message() {
    return this.detail
  }
}

/** The provider answered 429; `retryAfterMs` is its `Retry-After`, when it sent one. */
export class ProviderRateLimited extends Schema.TaggedError<ProviderRateLimited>()(
  "ProviderRateLimited",
  { detail: Schema.String, retryAfterMs: Schema.optional(Schema.Number) },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return this.detail
  }
}

/** The provider answered 2xx with a body that is not the JSON we expect. Counts against the breaker. */
export class ProviderResponseMalformed extends Schema.TaggedError<ProviderResponseMalformed>()(
  "ProviderResponseMalformed",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 502 })
) {
  override get message() {
    return this.detail
  }
}

export type ProviderError = ProviderUnavailable | ProviderRejected | ProviderRateLimited | ProviderResponseMalformed

// ---- wire format

const PositionJson = Schema.Struct({
  id: Schema.Int,
  order: Schema.String,
  secret: Schema.String.pipe(Schema.minLength(1)),
  holder_reference: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
  status: Schema.Literal("valid", "canceled", "refunded", "transferred"),
  last_modified: Schema.DateFromString.pipe(Schema.validDate()),
  version: Schema.optionalWith(Schema.Int, { default: () => 0 })
})

const PageJson = <A, I>(item: Schema.Schema<A, I>) =>
  Schema.Struct({ count: Schema.Int, next: Schema.NullOr(Schema.String), results: Schema.Array(item) })

const EventJson = Schema.Struct({
  slug: Schema.String,
  name: Schema.Record({ key: Schema.String, value: Schema.String }),
  date_from: Schema.NullOr(Schema.String),
  date_to: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null })
})

const RedeemJson = Schema.Struct({
  status: Schema.Literal("ok", "error", "incomplete"),
  reason: Schema.optional(Schema.String)
})

const statusFromWire: Record<typeof PositionJson.Type["status"], TicketStatus> = {
  valid: "valid",
  canceled: "cancelled",
  refunded: "refunded",
  transferred: "transferred"
}

// ---- service

export interface ProviderEvent {
  readonly slug: string
  readonly name: string
  readonly dateFrom: string | null
  readonly dateTo: string | null
}

export interface TicketPage {
  readonly tickets: ReadonlyArray<ProviderTicket>
  /** Absolute URL of the next page of the same query, if any. */
  readonly next: string | undefined
  readonly count: number
}

export interface CheckinWriteBack {
  readonly secret: string
  /** The gate's scan nonce: the provider records one check-in per nonce. */
  readonly nonce: string
  readonly type: "entry" | "exit"
  readonly datetime: Date
}

export type CheckinResult =
  | { readonly _tag: "Recorded" }
  /** The provider answered and declined (unknown or cancelled ticket); retrying changes nothing. */
  | { readonly _tag: "Declined"; readonly reason: string }

export interface TicketProviderShape {
  /** False when no provider is configured: every call then fails with `ProviderUnavailable`. */
  readonly configured: boolean
  readonly events: Effect.Effect<ReadonlyArray<ProviderEvent>, ProviderError>
  readonly event: (slug: string) => Effect.Effect<ProviderEvent, ProviderError>
  /**
   * One page of an event's tickets changed at or after `modifiedSince` (inclusive), ordered by
   * `(modified, id)`; or the page behind a `next` URL from an earlier page.
   */
  readonly tickets: (
    slug: string,
    query: { readonly modifiedSince?: Date | undefined; readonly pageUrl?: string | undefined }
  ) => Effect.Effect<TicketPage, ProviderError>
  /**
   * Writes a gate check-in back to the provider. Idempotent through the nonce: sending the same
   * check-in again records nothing new. The gate never waits for this.
   */
  readonly checkin: (checkin: CheckinWriteBack) => Effect.Effect<CheckinResult, ProviderError>
  readonly breakerState: Effect.Effect<CircuitBreaker.BreakerState>
}

export interface TicketProviderSettings {
  readonly baseUrl: URL
  readonly token: Option.Option<Redacted.Redacted>
  readonly timeoutMs: number
  readonly retries: number
  readonly retryBaseMs: number
  readonly retryAfterMaxMs: number
  readonly concurrency: number
  readonly pageSize: number
  readonly breaker: CircuitBreaker.BreakerSettings
}

const breakerGauge = Metric.gauge("gatehouse_ticket_provider_breaker_state", {
  description: "Ticketing provider circuit breaker: 0 closed, 1 half-open, 2 open"
})
const requestCount = Metric.counter("gatehouse_ticket_provider_requests_total", {
  description: "Ticketing provider requests by operation and outcome",
  incremental: true
})

const outcomeOf = (error: ProviderError | undefined) =>
  error === undefined
    ? "ok"
    : error._tag === "ProviderUnavailable"
    ? (error.circuitOpen ? "circuit_open" : "unavailable")
    : error._tag === "ProviderRejected"
    ? "rejected"
    : error._tag === "ProviderRateLimited"
    ? "rate_limited"
    : "malformed"

/** `Retry-After` as delay-seconds or an HTTP date, in milliseconds. */
export const parseRetryAfter = (value: string | undefined, now: number): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const isRetryable = (error: ProviderError) =>
  (error._tag === "ProviderUnavailable" && !error.circuitOpen) || error._tag === "ProviderRateLimited"

/** Failures that say the provider is unhealthy; a 4xx or 429 proves it is up and answering. */
const countsAgainstBreaker = (error: ProviderError) =>
  error._tag === "ProviderUnavailable" || error._tag === "ProviderResponseMalformed"

const describe = (cause: unknown): string => {
  const inner = Predicate.hasProperty(cause, "cause") ? cause.cause : undefined
  const code = Predicate.hasProperty(inner, "code") ? String(inner.code) : undefined
  const text = inner instanceof Error ? inner.message : cause instanceof Error ? cause.message : String(cause)
  return code !== undefined && !text.includes(code) ? `${code}: ${text}` : text
}

export const make = (settings: TicketProviderSettings) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const health = yield* Health
    const semaphore = yield* Effect.makeSemaphore(settings.concurrency)
    const base = settings.baseUrl.toString().replace(/\/+$/, "")
    const origin = settings.baseUrl.origin

    const report = (state: CircuitBreaker.BreakerState) =>
      Effect.zipRight(
        Metric.set(breakerGauge, CircuitBreaker.stateCode(state)),
        state._tag === "Closed"
          ? health.set("ticketing", "up")
          : health.set(
            "ticketing",
            "degraded",
            `ticketing provider circuit ${state._tag === "Open" ? "open" : "half-open"}`
          )
      )
    const breaker = yield* CircuitBreaker.make(settings.breaker, (from, to) =>
      Effect.zipRight(
        report(to),
        Effect.logInfo(
          to._tag === "Open" ? "breaker opened" : to._tag === "HalfOpen" ? "breaker half-open" : "breaker closed"
        ).pipe(Effect.annotateLogs({ component: "ticketing", from: from._tag }))
      ))
    yield* report(CircuitBreaker.initial)

    /** One HTTP exchange: status classified, body parsed and decoded, all within the timeout. */
    const exchange = <A, I>(
      request: HttpClientRequest.HttpClientRequest,
      schema: Schema.Schema<A, I>,
      accept: (status: number) => boolean = (status) => status >= 200 && status < 300
    ) =>
      Effect.gen(function*() {
        const response = yield* client.execute(request).pipe(
          Effect.mapError((error) => new ProviderUnavailable({ detail: `request failed: ${describe(error)}` }))
        )
        const readText = (r: HttpClientResponse.HttpClientResponse) =>
          r.text.pipe(
            Effect.mapError((error) =>
              new ProviderUnavailable({ detail: `reading the answer failed: ${describe(error)}` })
            )
          )
        if (response.status === 429) {
          const now = Date.now()
          const retryAfterMs = parseRetryAfter(response.headers["retry-after"], now)
          return yield* new ProviderRateLimited({
            detail: "the provider is rate limiting requests",
            ...(retryAfterMs === undefined ? {} : { retryAfterMs })
          })
        }
        if (response.status >= 500) {
          return yield* new ProviderUnavailable({ detail: `the provider answered ${response.status}` })
        }
        if (!accept(response.status)) {
          return yield* new ProviderRejected({
            detail: `the provider refused the request with ${response.status}`,
            status: response.status
          })
        }
        const text = yield* readText(response)
        const json = yield* Effect.try({
          try: () => JSON.parse(text) as unknown,
          catch: () => new ProviderResponseMalformed({ detail: "the provider's answer is not valid JSON" })
        })
        const value = yield* Schema.decodeUnknown(schema)(json).pipe(
          Effect.mapError((error) =>
            new ProviderResponseMalformed({
              detail: `the provider's answer has an unexpected shape: ${
                ParseResult.TreeFormatter.formatErrorSync(error).split("\n").slice(0, 3).join(" ")
              }`.slice(0, 300)
            })
          )
        )
        return { status: response.status, value }
      }).pipe(
        Effect.timeoutFail({
          duration: Duration.millis(settings.timeoutMs),
          onTimeout: () => new ProviderUnavailable({ detail: `no answer within ${settings.timeoutMs} ms` })
        })
      )

    const retryAfterOf = (error: ProviderError) => error._tag === "ProviderRateLimited" ? error.retryAfterMs : undefined

    /** Every call: retried with backoff and jitter, through the breaker, within the concurrency limit. */
    const call = <A>(operation: string, attempt: Effect.Effect<A, ProviderError>) =>
      breaker.run(semaphore.withPermits(1)(attempt), countsAgainstBreaker).pipe(
        Effect.catchTag("CircuitOpen", (open) =>
          Effect.fail(
            new ProviderUnavailable({
              detail: `ticketing provider circuit open; next probe in ${open.retryInMs} ms`,
              circuitOpen: true
            })
          )),
        Effect.tapBoth({
          onFailure: (error) =>
            Metric.increment(
              Metric.tagged(Metric.tagged(requestCount, "operation", operation), "outcome", outcomeOf(error))
            ),
          onSuccess: () =>
            Metric.increment(Metric.tagged(Metric.tagged(requestCount, "operation", operation), "outcome", "ok"))
        }),
        Effect.tapError((error) =>
          isRetryable(error)
            ? Effect.logDebug("provider request failed, retrying").pipe(
              Effect.annotateLogs({ component: "ticketing", operation, error: error.detail })
            )
            : Effect.void
        ),
        Effect.retry({
          schedule: providerRetry<ProviderError>(
            { baseMs: settings.retryBaseMs, retries: settings.retries },
            retryAfterOf
          ),
          while: (error) => isRetryable(error) && (retryAfterOf(error) ?? 0) <= settings.retryAfterMaxMs
        }),
        Effect.withSpan(`TicketProvider.${operation}`)
      )

    const withAuth = (request: HttpClientRequest.HttpClientRequest) =>
      Option.match(settings.token, {
        onNone: () => request,
        onSome: (token) => HttpClientRequest.setHeader(request, "authorization", `Token ${Redacted.value(token)}`)
      }).pipe(HttpClientRequest.acceptJson)

    const toEvent = (e: typeof EventJson.Type): ProviderEvent => ({
      slug: e.slug,
      name: e.name.en ?? Object.values(e.name)[0] ?? e.slug,
      dateFrom: e.date_from,
      dateTo: e.date_to
    })

    const sameOrigin = (url: string) =>
      Effect.try({
        try: () => {
          const parsed = new URL(url)
          if (parsed.origin !== origin) throw new Error("foreign origin")
          return parsed.toString()
        },
        catch: () => new ProviderResponseMalformed({ detail: "the provider's next link points elsewhere" })
      })

    const events = Effect.gen(function*() {
      const all: Array<ProviderEvent> = []
      let url: string | undefined = `${base}/events/`
      while (url !== undefined) {
        const page: { value: { next: string | null; results: ReadonlyArray<typeof EventJson.Type> } } = yield* call(
          "events",
          exchange(withAuth(HttpClientRequest.get(url)), PageJson(EventJson))
        )
        all.push(...page.value.results.map(toEvent))
        url = page.value.next === null ? undefined : yield* sameOrigin(page.value.next)
      }
      return all
    })

    const event = (slug: string) =>
      call("event", exchange(withAuth(HttpClientRequest.get(`${base}/events/${encodeURIComponent(slug)}/`)), EventJson))
        .pipe(Effect.map(({ value }) => toEvent(value)))

    const tickets: TicketProviderShape["tickets"] = (slug, query) =>
      Effect.gen(function*() {
        const url = query.pageUrl !== undefined
          ? yield* sameOrigin(query.pageUrl)
          : `${base}/events/${encodeURIComponent(slug)}/orderpositions/?${new URLSearchParams({
            ordering: "last_modified,id",
            page_size: String(settings.pageSize),
            ...(query.modifiedSince === undefined ? {} : { modified_since: query.modifiedSince.toISOString() })
          })}`
        const { value } = yield* call("tickets", exchange(withAuth(HttpClientRequest.get(url)), PageJson(PositionJson)))
        return {
          count: value.count,
          next: value.next ?? undefined,
          tickets: value.results.map((p): ProviderTicket => ({
            providerId: p.id,
            order: p.order,
            secret: p.secret,
            holderReference: p.holder_reference,
            status: statusFromWire[p.status],
            modified: p.last_modified,
            version: p.version
          }))
        }
      })

    const checkin = (input: CheckinWriteBack) =>
      call(
        "checkin",
        exchange(
          withAuth(HttpClientRequest.post(`${base}/checkinrpc/redeem/`)).pipe(
            HttpClientRequest.bodyUnsafeJson({
              secret: input.secret,
              nonce: input.nonce,
              type: input.type,
              datetime: input.datetime.toISOString(),
              force: true
            })
          ),
          RedeemJson,
          (status) => (status >= 200 && status < 300) || status === 400 || status === 404
        )
      ).pipe(Effect.map(({ value }): CheckinResult =>
        value.status === "ok"
          ? { _tag: "Recorded" }
          : { _tag: "Declined", reason: value.reason ?? value.status }
      ))

    return {
      configured: true,
      events,
      event,
      tickets,
      checkin,
      breakerState: breaker.state
    } satisfies TicketProviderShape
  })

const notConfigured = new ProviderUnavailable({ detail: "no ticketing provider is configured (TICKET_PROVIDER_URL)" })

/** The ticketing provider's API, or, with no provider configured, a stand-in that refuses every call. */
export class TicketProvider extends Context.Tag("gatehouse/TicketProvider")<TicketProvider, TicketProviderShape>() {
  static readonly layer = Layer.effect(
    TicketProvider,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const health = yield* Health
      if (Option.isNone(config.ticketProviderUrl)) {
        yield* health.set("ticketing", "up", "no provider configured; ticket sync disabled")
        return {
          configured: false,
          events: Effect.fail(notConfigured),
          event: () => Effect.fail(notConfigured),
          tickets: () => Effect.fail(notConfigured),
          checkin: () => Effect.fail(notConfigured),
          breakerState: Effect.succeed(CircuitBreaker.initial)
        } satisfies TicketProviderShape
      }
      return yield* make({
        baseUrl: config.ticketProviderUrl.value,
        token: config.ticketProviderToken,
        timeoutMs: config.ticketProviderTimeoutMs,
        retries: config.ticketProviderRetries,
        retryBaseMs: config.ticketProviderRetryBaseMs,
        retryAfterMaxMs: config.ticketProviderRetryAfterMaxMs,
        concurrency: config.ticketProviderConcurrency,
        pageSize: config.ticketSyncPageSize,
        breaker: {
          failureThreshold: config.ticketProviderBreakerFailures,
          openMs: config.ticketProviderBreakerOpenMs,
          halfOpenProbes: config.ticketProviderBreakerProbes
        }
      })
    })
  )
}
