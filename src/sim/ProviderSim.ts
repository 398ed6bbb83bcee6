import { Context, Effect, Layer } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"

/**
 * A pretix-style ticketing provider on loopback, for tests, benchmarks and the demo. It serves
 * events and order positions (tickets) with `modified_since` filtering and `next`-link
 * pagination, accepts check-in write-backs idempotently by nonce, and injects faults switched
 * at run time. Two listeners: the provider API, and a control API (`/_sim/...`) that keeps
 * answering while the provider API refuses connections.
 *
 * Wire format (pretix-like, with two extensions a real provider would carry in its own way):
 * - `GET {base}/events/` and `GET {base}/events/{slug}/`
 * - `GET {base}/events/{slug}/orderpositions/?modified_since=ISO&page=N&page_size=N`, ordered by
 *   `(last_modified, id)`; `modified_since` is inclusive
 * - `POST {base}/checkinrpc/redeem/` with `{ secret, nonce, type, datetime, force }`
 * where `{base}` is `/api/v1/organizers/{organizer}`. Positions carry `holder_reference` (the
 * customer reference people enroll with) and `status` (valid, canceled, refunded, transferred).
 */

export type PositionStatus = "valid" | "canceled" | "refunded" | "transferred"

export interface SimPosition {
  id: number
  order: string
  positionid: number
  item: number
  secret: string
  attendee_name: string
  holder_reference: string | null
  status: PositionStatus
  transferred_to: number | null
  last_modified: string
  version: number
}

export interface SimEvent {
  slug: string
  name: { en: string }
  date_from: string
  date_to: string
  positions: Map<number, SimPosition>
}

export interface SimCheckin {
  nonce: string
  secret: string
  position: number | null
  type: "entry" | "exit"
  datetime: string
  status: number
  body: unknown
  /** Redeem requests that reached the provider with this nonce (retries and resends included). */
  requests: number
}

/** API routes, as counted and as fault filters name them. */
export type SimRoute = "events" | "event" | "orderpositions" | "redeem"

export type Fault =
  /** Answer with this HTTP status (5xx by default 503). */
  | { readonly type: "error"; readonly status?: number }
  /** Answer 429 with `Retry-After` in seconds. */
  | { readonly type: "rateLimit"; readonly retryAfterSeconds: number }
  /** Reset the TCP connection (RST) instead of answering. */
  | { readonly type: "reset" }
  /** Accept the request and never answer. */
  | { readonly type: "hang" }
  /** Answer 200 with a body that is not valid JSON (or, `shape`, JSON of the wrong shape). */
  | { readonly type: "malformed"; readonly variant?: "truncated" | "shape" }
  /** Close the listener and every open connection: new connections are refused. */
  | { readonly type: "refuse" }

export interface FaultSetting {
  readonly fault: Fault
  /** How many requests it applies to; unset: until cleared. Ignored by `refuse`. */
  readonly times?: number
  /** Which routes it applies to; unset: all API routes. */
  readonly routes?: ReadonlyArray<SimRoute>
}

export interface SimOptions {
  readonly port?: number
  readonly controlPort?: number
  readonly host?: string
  readonly organizer?: string
  /** Required `Authorization: Token <token>`; unset accepts any request. */
  readonly token?: string
  readonly seed?: number
  readonly events?: number
  readonly ticketsPerEvent?: number
  readonly defaultPageSize?: number
}

/** Deterministic generator (mulberry32), so a seed gives the same events and tickets. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
const firstNames = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Tim", "Margaret", "Dennis"]

interface Pending {
  readonly fault: Fault
  remaining: number | undefined
  readonly routes: ReadonlySet<SimRoute> | undefined
}

export class ProviderSimulator {
  readonly organizer: string
  private readonly token: string | undefined
  private readonly random: () => number
  private readonly defaultPageSize: number
  private readonly events = new Map<string, SimEvent>()
  private readonly checkins = new Map<string, SimCheckin>()
  private readonly callCounts = new Map<SimRoute, number>()
  private readonly sockets = new Set<Net.Socket>()
  private readonly hung = new Set<Http.ServerResponse>()
  private readonly api: Http.Server
  private readonly control: Http.Server
  private fault: Pending | undefined
  private inFlight = 0
  private peak = 0
  private latencyMs = 0
  private listening = false
  private lastClock = 0
  private frozenClock: number | undefined
  private nextPositionId = 1
  private readonly host: string
  private apiPort: number
  private controlPort: number

  constructor(options: SimOptions = {}) {
    this.organizer = options.organizer ?? "demo"
    this.token = options.token
    this.random = prng(options.seed ?? 42)
    this.defaultPageSize = options.defaultPageSize ?? 50
    this.host = options.host ?? "127.0.0.1"
    this.apiPort = options.port ?? 0
    this.controlPort = options.controlPort ?? 0
    this.api = Http.createServer((req, res) => void this.handleApi(req, res))
    this.api.on("connection", (socket) => {
      this.sockets.add(socket)
      socket.on("close", () => this.sockets.delete(socket))
    })
    this.control = Http.createServer((req, res) => void this.handleControl(req, res))
    for (let i = 0; i < (options.events ?? 2); i++) {
      const event = this.addEvent({ slug: `event-${i + 1}` })
      for (let j = 0; j < (options.ticketsPerEvent ?? 20); j++) this.addTicket(event.slug)
    }
  }

  // ---- lifecycle

  async start(): Promise<void> {
    await this.listenApi()
    await new Promise<void>((resolve, reject) => {
      this.control.once("error", reject)
      this.control.listen(this.controlPort, this.host, () => {
        this.controlPort = (this.control.address() as Net.AddressInfo).port
        resolve()
      })
    })
  }

  async stop(): Promise<void> {
    this.releaseHung()
    await this.closeApi()
    this.control.closeAllConnections()
    await new Promise<void>((resolve) => this.control.close(() => resolve()))
  }

  /** Base URL of the provider API, e.g. `http://127.0.0.1:PORT/api/v1/organizers/demo`. */
  get baseUrl(): string {
    return `http://${this.host}:${this.apiPort}/api/v1/organizers/${this.organizer}`
  }

  get controlUrl(): string {
    return `http://${this.host}:${this.controlPort}`
  }

  private listenApi() {
    if (this.listening) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      this.api.once("error", reject)
      this.api.listen(this.apiPort, this.host, () => {
        this.api.off("error", reject)
        this.apiPort = (this.api.address() as Net.AddressInfo).port
        this.listening = true
        resolve()
      })
    })
  }

  private closeApi() {
    if (!this.listening) return Promise.resolve()
    this.listening = false
    return new Promise<void>((resolve) => {
      this.api.close(() => resolve())
      for (const socket of this.sockets) socket.destroy()
    })
  }

  private releaseHung() {
    for (const res of this.hung) res.socket?.destroy()
    this.hung.clear()
  }

  // ---- faults and counters

  /** Switches a fault on; `refuse` closes the listener until `clearFault`. */
  async setFault(setting: FaultSetting): Promise<void> {
    this.fault = {
      fault: setting.fault,
      remaining: setting.times,
      routes: setting.routes === undefined ? undefined : new Set(setting.routes)
    }
    if (setting.fault.type === "refuse") await this.closeApi()
    else await this.listenApi()
  }

  /** Back to healthy: listening again, hung requests dropped, no latency. */
  async clearFault(): Promise<void> {
    this.fault = undefined
    this.latencyMs = 0
    this.releaseHung()
    await this.listenApi()
  }

  setLatency(ms: number): void {
    this.latencyMs = ms
  }

  /** API requests received per route since the last reset, faulted ones included. */
  calls(): Record<SimRoute, number> {
    return {
      events: this.callCounts.get("events") ?? 0,
      event: this.callCounts.get("event") ?? 0,
      orderpositions: this.callCounts.get("orderpositions") ?? 0,
      redeem: this.callCounts.get("redeem") ?? 0
    }
  }

  resetCalls(): void {
    this.callCounts.clear()
    this.peak = this.inFlight
  }

  /** Most API requests in progress at once since the last `resetCalls`. */
  peakInFlight(): number {
    return this.peak
  }

  /** Requests currently held open by the `hang` fault. */
  hanging(): number {
    return this.hung.size
  }

  // ---- data

  /** A strictly increasing clock, unless frozen so that every change shares one timestamp. */
  private tick(): string {
    if (this.frozenClock !== undefined) return new Date(this.frozenClock).toISOString()
    this.lastClock = Math.max(Date.now(), this.lastClock + 1)
    return new Date(this.lastClock).toISOString()
  }

  /** Every change from now on gets the same `last_modified` until `unfreezeClock`. */
  freezeClock(): string {
    this.frozenClock = Math.max(Date.now(), this.lastClock + 1)
    this.lastClock = this.frozenClock
    return new Date(this.frozenClock).toISOString()
  }

  unfreezeClock(): void {
    this.frozenClock = undefined
  }

  private code(length: number) {
    let out = ""
    for (let i = 0; i < length; i++) out += alphabet[Math.floor(this.random() * alphabet.length)]
    return out
  }

  addEvent(input: { slug?: string; name?: string } = {}): SimEvent {
    const slug = input.slug ?? `event-${this.events.size + 1}`
    const existing = this.events.get(slug)
    if (existing !== undefined) return existing
    const start = new Date(Date.UTC(2027, 0, 1 + this.events.size, 18))
    const event: SimEvent = {
      slug,
      name: { en: input.name ?? `Concert ${slug}` },
      date_from: start.toISOString(),
      date_to: new Date(start.getTime() + 4 * 3600_000).toISOString(),
      positions: new Map()
    }
    this.events.set(slug, event)
    return event
  }

  event(slug: string): SimEvent | undefined {
    return this.events.get(slug)
  }

  position(id: number): SimPosition | undefined {
    for (const event of this.events.values()) {
      const found = event.positions.get(id)
      if (found !== undefined) return found
    }
    return undefined
  }

  addTicket(
    slug: string,
    input: { holderReference?: string | null; secret?: string; attendeeName?: string } = {}
  ): SimPosition {
    const event = this.events.get(slug)
    if (event === undefined) throw new Error(`no event ${slug}`)
    const id = this.nextPositionId++
    const position: SimPosition = {
      id,
      order: this.code(5),
      positionid: 1,
      item: 1,
      secret: input.secret ?? this.code(32).toLowerCase(),
      attendee_name: input.attendeeName ??
        `${firstNames[Math.floor(this.random() * firstNames.length)]} ${this.code(1)}.`,
      holder_reference: input.holderReference === undefined ? `cust-${this.code(8)}` : input.holderReference,
      status: "valid",
      transferred_to: null,
      last_modified: this.tick(),
      version: 1
    }
    event.positions.set(id, position)
    return position
  }

  private change(id: number, update: (p: SimPosition) => void): SimPosition {
    const position = this.position(id)
    if (position === undefined) throw new Error(`no ticket ${id}`)
    update(position)
    position.version += 1
    position.last_modified = this.tick()
    return position
  }

  cancel(id: number): SimPosition {
    return this.change(id, (p) => (p.status = "canceled"))
  }

  refund(id: number): SimPosition {
    return this.change(id, (p) => (p.status = "refunded"))
  }

  /** The old position becomes `transferred`; a new position with a new secret goes to the new holder. */
  transfer(id: number, holderReference: string | null): { old: SimPosition; new: SimPosition } {
    const old = this.position(id)
    if (old === undefined) throw new Error(`no ticket ${id}`)
    const slug = [...this.events.values()].find((e) => e.positions.has(id))!.slug
    const fresh = this.addTicket(slug, { holderReference })
    const updated = this.change(id, (p) => {
      p.status = "transferred"
      p.transferred_to = fresh.id
    })
    return { old: updated, new: fresh }
  }

  /** Bumps tickets (all of the event's when `ids` is unset) so that they all share one new timestamp. */
  touchTogether(slug: string, ids?: ReadonlyArray<number>): string {
    const event = this.events.get(slug)
    if (event === undefined) throw new Error(`no event ${slug}`)
    const wasFrozen = this.frozenClock !== undefined
    const stamp = wasFrozen ? this.tick() : this.freezeClock()
    for (const id of ids ?? [...event.positions.keys()]) this.change(id, () => {})
    if (!wasFrozen) this.unfreezeClock()
    return stamp
  }

  checkinsFor(secret?: string): Array<SimCheckin> {
    return [...this.checkins.values()].filter((c) => secret === undefined || c.secret === secret)
  }

  // ---- provider API

  private routeOf(method: string, path: string): { route: SimRoute; slug?: string } | undefined {
    const prefix = `/api/v1/organizers/${this.organizer}`
    if (!path.startsWith(prefix)) return undefined
    const rest = path.slice(prefix.length).replace(/\/+$/, "")
    const parts = rest.split("/").filter((p) => p !== "")
    if (method === "GET" && parts.length === 1 && parts[0] === "events") return { route: "events" }
    if (method === "GET" && parts.length === 2 && parts[0] === "events") return { route: "event", slug: parts[1]! }
    if (method === "GET" && parts.length === 3 && parts[0] === "events" && parts[2] === "orderpositions") {
      return { route: "orderpositions", slug: parts[1]! }
    }
    if (method === "POST" && parts.length === 2 && parts[0] === "checkinrpc" && parts[1] === "redeem") {
      return { route: "redeem" }
    }
    return undefined
  }

  private takeFault(route: SimRoute): Fault | undefined {
    const pending = this.fault
    if (pending === undefined || pending.fault.type === "refuse") return undefined
    if (pending.routes !== undefined && !pending.routes.has(route)) return undefined
    if (pending.remaining !== undefined) {
      pending.remaining -= 1
      if (pending.remaining <= 0) this.fault = undefined
    }
    return pending.fault
  }

  private async handleApi(req: Http.IncomingMessage, res: Http.ServerResponse) {
    const url = new URL(req.url ?? "/", `http://${req.headers.host ?? this.host}`)
    const matched = this.routeOf(req.method ?? "GET", url.pathname)
    if (matched === undefined) return json(res, 404, { detail: "Not found." })
    this.callCounts.set(matched.route, (this.callCounts.get(matched.route) ?? 0) + 1)
    this.inFlight += 1
    this.peak = Math.max(this.peak, this.inFlight)
    res.on("close", () => (this.inFlight -= 1))
    const body = req.method === "POST" ? await readBody(req) : ""

    if (this.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.latencyMs))
    const fault = this.takeFault(matched.route)
    if (fault !== undefined) {
      switch (fault.type) {
        case "error":
          return json(res, fault.status ?? 503, { detail: "Service temporarily unavailable." })
        case "rateLimit":
          res.setHeader("retry-after", String(fault.retryAfterSeconds))
          return json(res, 429, { detail: "Request was throttled." })
        case "reset":
          req.socket.resetAndDestroy()
          return
        case "hang":
          this.hung.add(res)
          res.on("close", () => this.hung.delete(res))
          return
        case "malformed":
          res.writeHead(200, { "content-type": "application/json" })
          res.end(
            fault.variant === "shape"
              ? "{\"count\": \"many\", \"results\": 7}"
              : "{\"count\": 3, \"next\": null, \"results\": [{\"id\": "
          )
          return
      }
    }

    if (this.token !== undefined && req.headers.authorization !== `Token ${this.token}`) {
      return json(res, 401, { detail: "Invalid token." })
    }

    switch (matched.route) {
      case "events":
        return this.page(res, url, [...this.events.values()].map(eventJson))
      case "event": {
        const event = this.events.get(matched.slug!)
        return event === undefined ? json(res, 404, { detail: "Not found." }) : json(res, 200, eventJson(event))
      }
      case "orderpositions":
        return this.orderPositions(res, url, matched.slug!)
      case "redeem":
        return this.redeem(res, body)
    }
  }

  private page(res: Http.ServerResponse, url: URL, all: ReadonlyArray<unknown>) {
    const page = Number(url.searchParams.get("page") ?? "1")
    const size = Number(url.searchParams.get("page_size") ?? String(this.defaultPageSize))
    if (!Number.isInteger(page) || page < 1 || !Number.isInteger(size) || size < 1 || size > 1000) {
      return json(res, 400, { detail: "Invalid page." })
    }
    const start = (page - 1) * size
    if (start > 0 && start >= all.length) return json(res, 404, { detail: "Invalid page." })
    const next = start + size < all.length
      ? (() => {
        const u = new URL(url)
        u.searchParams.set("page", String(page + 1))
        return u.toString()
      })()
      : null
    const previous = page > 1
      ? (() => {
        const u = new URL(url)
        u.searchParams.set("page", String(page - 1))
        return u.toString()
      })()
      : null
    res.setHeader("x-page-generated", new Date().toISOString())
    return json(res, 200, { count: all.length, next, previous, results: all.slice(start, start + size) })
  }

  private orderPositions(res: Http.ServerResponse, url: URL, slug: string) {
    const event = this.events.get(slug)
    if (event === undefined) return json(res, 404, { detail: "Not found." })
    const since = url.searchParams.get("modified_since")
    const sinceMs = since === null ? undefined : Date.parse(since)
    if (sinceMs !== undefined && Number.isNaN(sinceMs)) {
      return json(res, 400, { modified_since: ["Enter a valid date/time."] })
    }
    const rows = [...event.positions.values()]
      .filter((p) => sinceMs === undefined || Date.parse(p.last_modified) >= sinceMs)
      .sort((a, b) => Date.parse(a.last_modified) - Date.parse(b.last_modified) || a.id - b.id)
      .map((p) => ({ ...p }))
    return this.page(res, url, rows)
  }

  private redeem(res: Http.ServerResponse, raw: string) {
    let input: any
    try {
      input = JSON.parse(raw)
    } catch {
      return json(res, 400, { detail: "JSON parse error." })
    }
    if (typeof input?.secret !== "string" || typeof input?.nonce !== "string" || input.nonce === "") {
      return json(res, 400, { detail: "secret and nonce are required." })
    }
    const previous = this.checkins.get(input.nonce)
    if (previous !== undefined) {
      previous.requests += 1
      return json(res, previous.status, previous.body)
    }

    const position = [...this.events.values()].flatMap((e) => [...e.positions.values()]).find((p) =>
      p.secret === input.secret
    )
    const type: "entry" | "exit" = input.type === "exit" ? "exit" : "entry"
    const [status, body] = position === undefined
      ? [404, { status: "error", reason: "invalid" }] as const
      : position.status !== "valid" && input.force !== true
      ? [400, { status: "error", reason: "canceled", position: { id: position.id } }] as const
      : [201, { status: "ok", position: { id: position.id, secret: position.secret } }] as const
    this.checkins.set(input.nonce, {
      nonce: input.nonce,
      secret: input.secret,
      position: position?.id ?? null,
      type,
      datetime: typeof input.datetime === "string" ? input.datetime : new Date().toISOString(),
      status,
      body,
      requests: 1
    })
    return json(res, status, body)
  }

  // ---- control API

  private async handleControl(req: Http.IncomingMessage, res: Http.ServerResponse) {
    const url = new URL(req.url ?? "/", `http://${req.headers.host ?? this.host}`)
    const parts = url.pathname.split("/").filter((p) => p !== "")
    const method = req.method ?? "GET"
    let input: any = {}
    if (method !== "GET" && method !== "DELETE") {
      const raw = await readBody(req)
      try {
        input = raw === "" ? {} : JSON.parse(raw)
      } catch {
        return json(res, 400, { detail: "body is not JSON" })
      }
    }
    try {
      if (parts[0] !== "_sim") return json(res, 404, { detail: "Not found." })
      const [, a, b, c] = parts
      if (method === "GET" && a === "state") {
        return json(res, 200, {
          baseUrl: this.baseUrl,
          listening: this.listening,
          fault: this.fault?.fault ?? null,
          latencyMs: this.latencyMs,
          events: [...this.events.values()].map((e) => ({ ...eventJson(e), positions: [...e.positions.values()] }))
        })
      }
      if (a === "calls") {
        if (method === "DELETE") this.resetCalls()
        return json(res, 200, { ...this.calls(), peakInFlight: this.peak })
      }
      if (a === "faults" && method === "PUT") {
        await this.setFault(input as FaultSetting)
        return json(res, 200, { fault: input })
      }
      if (a === "faults" && method === "DELETE") {
        await this.clearFault()
        return json(res, 200, { fault: null })
      }
      if (a === "latency" && method === "PUT") {
        this.setLatency(Number(input.ms ?? 0))
        return json(res, 200, { latencyMs: this.latencyMs })
      }
      if (a === "clock" && method === "PUT") {
        if (input.frozen === true) return json(res, 200, { frozenAt: this.freezeClock() })
        this.unfreezeClock()
        return json(res, 200, { frozenAt: null })
      }
      if (a === "checkins" && method === "GET") {
        return json(res, 200, this.checkinsFor(url.searchParams.get("secret") ?? undefined))
      }
      if (a === "events" && method === "POST" && b === undefined) {
        const event = this.addEvent(input)
        const tickets = Array.from({ length: Number(input.tickets ?? 0) }, () => this.addTicket(event.slug))
        return json(res, 201, { ...eventJson(event), created: tickets })
      }
      if (a === "events" && b !== undefined && c === "tickets" && method === "POST") {
        const count = Number(input.count ?? 1)
        const created = Array.from({ length: count }, () =>
          this.addTicket(b, {
            ...(input.holderReference === undefined ? {} : { holderReference: input.holderReference }),
            ...(input.secret === undefined || count > 1 ? {} : { secret: input.secret })
          }))
        return json(res, 201, created)
      }
      if (a === "events" && b !== undefined && c === "touch" && method === "POST") {
        return json(res, 200, { last_modified: this.touchTogether(b, input.ids) })
      }
      if (a === "tickets" && b !== undefined && method === "POST") {
        const id = Number(b)
        if (c === "cancel") return json(res, 200, this.cancel(id))
        if (c === "refund") return json(res, 200, this.refund(id))
        if (c === "transfer") return json(res, 200, this.transfer(id, input.holderReference ?? null))
      }
      return json(res, 404, { detail: "Not found." })
    } catch (error) {
      return json(res, 400, { detail: error instanceof Error ? error.message : String(error) })
    }
  }
}

const eventJson = (e: SimEvent) => ({ slug: e.slug, name: e.name, date_from: e.date_from, date_to: e.date_to })

const json = (res: Http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(JSON.stringify(body))
}

const readBody = (req: Http.IncomingMessage) =>
  new Promise<string>((resolve) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", () => resolve(""))
  })

/** The running simulator of a test or a process. */
export class ProviderSim extends Context.Tag("gatehouse/ProviderSim")<ProviderSim, ProviderSimulator>() {
  /** Starts a simulator for the life of the layer. */
  static readonly layer = (options: SimOptions = {}) =>
    Layer.scoped(
      ProviderSim,
      Effect.acquireRelease(
        Effect.promise(async () => {
          const sim = new ProviderSimulator(options)
          await sim.start()
          return sim
        }),
        (sim) => Effect.promise(() => sim.stop())
      )
    )
}
