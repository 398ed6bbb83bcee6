import { Data, Duration, Effect } from "effect"
import type { FaultRates } from "./Faults.js"
import type { Rng } from "./Random.js"
import type { Stats } from "./Stats.js"

/** A device stopped retrying: the message may or may not have been applied. */
export class DeviceGaveUp extends Data.TaggedError("DeviceGaveUp")<{
  readonly label: string
  readonly attempts: number
  readonly last: string
}> {
  override get message() {
    return `${this.label}: gave up after ${this.attempts} attempts (${this.last})`
  }
}

export interface Reply {
  readonly status: number
  readonly body: any
  /** The service answered from its stored outcome (`Idempotent-Replayed: true`). */
  readonly replayed: boolean
  readonly attempts: number
}

export interface DeviceRequest {
  readonly method: "GET" | "POST" | "PUT" | "DELETE"
  readonly path: string
  readonly body?: unknown
  readonly bearer?: string | undefined
  /** Sent as `Idempotency-Key`; every resend of the request carries the same one. */
  readonly idempotencyKey?: string | undefined
  /** What the request is, for errors and the report. */
  readonly label: string
  /**
   * Whether the network faults of the schedule apply. Only requests that are safe to resend
   * (reads, and writes with an idempotency key) get duplicated or lose their answer.
   */
  readonly faults?: boolean
}

export interface ClientOptions {
  /** Base URLs of the running instances; each attempt picks one, as a load balancer would. */
  readonly targets: () => ReadonlyArray<string>
  readonly rates: FaultRates
  readonly stats: Stats
  readonly rng: Rng
  /** How long one attempt may take before the device gives up on it and resends. */
  readonly attemptTimeoutMs: number
  /** How long a device keeps resending one message before it gives up. */
  readonly giveUpAfterMs: number
}

/** Whether a failed answer is worth resending unchanged. */
export const retryable = (status: number, body: any): boolean => {
  if (status >= 500 || status === 429 || status === 408) return true
  // The first copy of this request is still running: wait and ask again.
  if (status === 409) return typeof body?.code === "string" && /progress/i.test(body.code)
  return false
}

type Outcome =
  | { readonly _tag: "answer"; readonly status: number; readonly body: any; readonly replayed: boolean }
  | { readonly _tag: "network"; readonly reason: string }
  | { readonly _tag: "timeout" }

const send = (url: string, request: DeviceRequest, timeoutMs: number) =>
  Effect.async<Outcome>((resume) => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), timeoutMs)
    const headers: Record<string, string> = { accept: "application/json" }
    if (request.bearer !== undefined) headers.authorization = `Bearer ${request.bearer}`
    if (request.idempotencyKey !== undefined) headers["idempotency-key"] = request.idempotencyKey
    let body: string | undefined
    if (request.body !== undefined) {
      body = JSON.stringify(request.body)
      headers["content-type"] = "application/json"
    }
    fetch(url + request.path, {
      method: request.method,
      headers,
      signal: controller.signal,
      ...(body === undefined ? {} : { body })
    }).then(async (response) => {
      const text = await response.text()
      let parsed: unknown = undefined
      try {
        parsed = text === "" ? undefined : JSON.parse(text)
      } catch {
        parsed = text
      }
      resume(Effect.succeed({
        _tag: "answer",
        status: response.status,
        body: parsed,
        replayed: response.headers.get("idempotent-replayed") === "true"
      }))
    }).catch((error: unknown) => {
      if (controller.signal.aborted) return resume(Effect.succeed({ _tag: "timeout" }))
      const cause = (error as { cause?: { code?: string; message?: string } }).cause
      resume(Effect.succeed({ _tag: "network", reason: cause?.code ?? cause?.message ?? String(error) }))
    }).finally(() => clearTimeout(timer))
    return Effect.sync(() => controller.abort())
  })

/**
 * How an edge device talks to Gatehouse: it resends a request that timed out, lost its answer or
 * met a failure worth retrying (connection refused while an instance restarts, 5xx, 429, 409
 * "still in progress") with the same Idempotency-Key, backing off with jitter, until it gets a
 * final answer or its patience runs out. The schedule's network faults are injected here: a copy
 * sent twice at once, an answer dropped after the server acted, an attempt abandoned early.
 */
export const makeClient = (options: ClientOptions) => {
  const { rates, rng, stats } = options

  const pickTarget = () => {
    const targets = options.targets()
    return targets.length === 0 ? undefined : rng.pick(targets)
  }

  const attempt = (request: DeviceRequest): Effect.Effect<Outcome> =>
    Effect.gen(function*() {
      const target = pickTarget()
      if (target === undefined) return { _tag: "network", reason: "no instance running" } as const
      stats.inc("requests")
      const faulty = request.faults === true
      if (faulty && rng.chance(rates.timeout)) {
        // Abandon the attempt after a few milliseconds: the server may or may not act on it.
        yield* send(target, request, 1 + rng.int(20))
        stats.inc("timeouts")
        return { _tag: "timeout" } as const
      }
      if (faulty && rng.chance(rates.duplicate)) {
        stats.inc("duplicatesSent")
        stats.inc("requests")
        const second = pickTarget() ?? target
        const [first] = yield* Effect.all([
          send(target, request, options.attemptTimeoutMs),
          send(second, request, options.attemptTimeoutMs)
        ], { concurrency: 2 })
        return first
      }
      const outcome = yield* send(target, request, options.attemptTimeoutMs)
      if (faulty && outcome._tag === "answer" && rng.chance(rates.dropResponse)) {
        stats.inc("responsesDropped")
        return { _tag: "network", reason: "response lost" } as const
      }
      return outcome
    })

  /** Sends `request` until a final answer; fails with `DeviceGaveUp` when patience runs out. */
  const call = (request: DeviceRequest): Effect.Effect<Reply, DeviceGaveUp> =>
    Effect.gen(function*() {
      const deadline = Date.now() + options.giveUpAfterMs
      let attempts = 0
      let last = ""
      while (true) {
        attempts++
        if (attempts > 1) stats.inc("retries")
        const outcome = yield* attempt(request)
        if (outcome._tag === "answer") {
          if (outcome.replayed) stats.inc("replays")
          if (!retryable(outcome.status, outcome.body)) {
            return { status: outcome.status, body: outcome.body, replayed: outcome.replayed, attempts }
          }
          if (outcome.status === 409) stats.inc("inProgress")
          if (outcome.status >= 500) stats.inc("serverErrors")
          last = `${outcome.status} ${outcome.body?.code ?? ""}`.trim()
        } else if (outcome._tag === "network") {
          if (outcome.reason !== "response lost") stats.inc("connectionErrors")
          last = outcome.reason
        } else {
          last = "timeout"
        }
        if (Date.now() >= deadline) {
          stats.inc("gaveUp")
          return yield* new DeviceGaveUp({ label: request.label, attempts, last })
        }
        // Full jitter on an exponential backoff: devices that lost the server together do not return together.
        const cap = Math.min(2_000, 50 * 2 ** Math.min(attempts, 8))
        yield* Effect.sleep(Duration.millis(rng.next() * cap))
      }
    })

  return { call }
}

export type Client = ReturnType<typeof makeClient>
