import { Duration, Effect } from "effect"
import { admin, device, enrollmentBody, modelDimension, type Scan, scanBody } from "./Api.js"
import type { Client, Reply } from "./Client.js"
import { makeFaceModel } from "./Embeddings.js"
import { buysTicket, enrolls, type PlannedPerson, population, shouldEnter } from "./Population.js"
import { uuidFrom } from "./Random.js"
import { admittedTwice, type Check, duplicates, expectNone, fail, pass, rateCheck, skip } from "./Report.js"
import type { Scenario, World } from "./World.js"

/** What devices were told about one message, for comparing with the database afterwards. */
interface Delivery {
  readonly key: string
  readonly deviceId: string
  status: "pending" | "answered" | "gave-up"
  /** Every final answer the device received for this message: the first, and replays. */
  readonly answers: Array<{ readonly status: number; readonly summary: string }>
}

interface ScanRecord extends Delivery {
  readonly nonce: string
  readonly person: PlannedPerson | undefined
  readonly direction: "entry" | "exit"
  readonly offline: boolean
  decision: string | undefined
  reason: string | undefined
}

interface Device {
  readonly name: string
  readonly deviceId: string
  readonly key: string
  readonly client: Client
}

interface Kiosk extends Device {
  /** Enrollments made offline, each kept as the message it is: every upload sends the same body. */
  readonly buffer: Array<{ readonly person: PlannedPerson; readonly delivery: Delivery; readonly body: unknown }>
}

interface Gate extends Device {
  readonly buffer: Array<ScanRecord>
}

interface PersonState {
  readonly plan: PlannedPerson
  enrollment: Delivery | undefined
  ticket: { readonly id: number; readonly secret: string } | undefined
  linked: boolean
  admitted: boolean
}

interface Fleet {
  venueId: string
  eventId: string
  providerEvent: string | undefined
  mapped: boolean
  kiosks: Array<Kiosk>
  gates: Array<Gate>
  people: Array<PersonState>
  scans: Array<ScanRecord>
  /** Kiosk checks after enrollment: a fresh capture of the person, or of someone else. */
  verifications: Array<{ readonly person: string; readonly genuine: boolean; readonly decision: string }>
  startedAt: number
}

const model = (seed: string) => makeFaceModel({ seed, dimension: modelDimension, noise: 0.5 })

const summarise = (reply: Reply): string =>
  reply.status >= 400
    ? `${reply.status} ${reply.body?.code ?? ""}`
    : JSON.stringify({ decision: reply.body?.decision, reason: reply.body?.reason, personId: reply.body?.personId })

const record = (delivery: Delivery, reply: Reply) => {
  delivery.status = "answered"
  delivery.answers.push({ status: reply.status, summary: summarise(reply) })
}

const must = (reply: Reply, what: string) =>
  reply.status < 300
    ? Effect.succeed(reply.body)
    : Effect.fail(new Error(`${what}: ${reply.status} ${reply.body?.detail ?? ""}`))

const sleepUntil = (fleet: Fleet, atMs: number) =>
  Effect.suspend(() => Effect.sleep(Duration.millis(Math.max(0, fleet.startedAt + atMs - Date.now()))))

/**
 * The fleet: enrollment kiosks, ticket sales in the provider, gates scanning arriving people and
 * strangers. Built on the running service's API; a capability it does not offer yet is skipped
 * and its invariants are reported as skipped, never as passed.
 */
export const makeFleetScenario = (): Scenario => {
  let fleet: Fleet | undefined
  const get = () => fleet!

  const setup = (world: World) =>
    Effect.gen(function*() {
      const operator = world.client("operator")
      const can = world.capabilities
      const kioskCount = Math.max(2, Math.ceil(world.options.people / 60))
      const gateCount = 4
      const plans = population({
        seed: world.options.seed,
        people: world.options.people,
        durationMs: world.options.durationSeconds * 1000,
        kiosks: kioskCount
      })
      world.stats.set("peoplePlanned", plans.filter(enrolls).length)
      const f: Fleet = {
        venueId: "",
        eventId: "",
        providerEvent: undefined,
        mapped: false,
        kiosks: [],
        gates: [],
        people: plans.map((plan) => ({
          plan,
          enrollment: undefined,
          ticket: undefined,
          linked: false,
          admitted: false
        })),
        scans: [],
        verifications: [],
        startedAt: 0
      }
      fleet = f
      if (!can.has("POST", "/v1/admin/venues")) return

      const venue = yield* operator.call(admin.createVenue(world.adminKey, `Demo arena ${world.options.seed}`))
      f.venueId = (yield* must(venue, "create venue")).venueId
      const makeDevice = (name: string) =>
        Effect.gen(function*() {
          const reply = yield* operator.call(admin.createDevice(world.adminKey, f.venueId, name))
          const body = yield* must(reply, `create device ${name}`)
          return { name, deviceId: body.device.deviceId, key: body.key.apiKey, client: world.client(name) }
        })
      for (let i = 0; i < kioskCount; i++) f.kiosks.push({ ...(yield* makeDevice(`kiosk-${i + 1}`)), buffer: [] })
      for (let i = 0; i < gateCount; i++) {
        f.gates.push({ ...(yield* makeDevice(`gate-${String.fromCharCode(65 + i)}`)), buffer: [] })
      }
      const now = Date.now()
      const event = yield* operator.call(
        admin.createEvent(
          world.adminKey,
          f.venueId,
          "Opening night",
          new Date(now - 3600_000),
          new Date(now + 12 * 3600_000)
        )
      )
      f.eventId = (yield* must(event, "create event")).eventId
      world.display.event(
        `venue, event, ${kioskCount} kiosks and ${gateCount} gates created; ${plans.length} people in the population`
      )
      if (can.has("PUT", "/v1/admin/events/{eventId}/check-in-list")) {
        // Re-entry after an exit is allowed, so that leaving and coming back is part of the evening.
        yield* must(yield* operator.call(admin.checkInList(world.adminKey, f.eventId, true)), "configure check-in list")
      }
      if (world.provider !== undefined && can.has("PUT", "/v1/admin/events/{eventId}/provider")) {
        const slug = `opening-${world.rng.hex(4)}`
        yield* world.provider.control("POST", "/_sim/events", { slug, name: "Opening night", tickets: 0 })
        f.providerEvent = slug
        yield* must(yield* operator.call(admin.mapEvent(world.adminKey, f.eventId, slug)), "map event")
        f.mapped = true
        world.display.event(`event mapped to provider event ${slug}; tickets sync from the simulator`)
      }
    })

  const enrollRequest = (world: World, person: PlannedPerson) => {
    const faces = model(world.options.seed)
    return {
      personId: person.id,
      externalRef: person.ref,
      vectors: [
        faces.capture(person.ref, person.rng.fork("enroll-1")),
        faces.capture(person.ref, person.rng.fork("enroll-2"))
      ],
      givenAt: new Date()
    }
  }

  /** A kiosk enrolls a person: at once when online, else buffered for the next batch upload. */
  const enroll = (world: World, f: Fleet, state: PersonState) =>
    Effect.gen(function*() {
      const kiosk = f.kiosks[state.plan.kiosk]!
      const delivery: Delivery = {
        key: `enroll-${state.plan.id}`,
        deviceId: kiosk.deviceId,
        status: "pending",
        answers: []
      }
      state.enrollment = delivery
      if (world.offline.kiosk && world.capabilities.has("POST", "/v1/device-messages")) {
        kiosk.buffer.push({ person: state.plan, delivery, body: enrollmentBody(enrollRequest(world, state.plan)) })
        return
      }
      const reply = yield* kiosk.client.call(device.enroll(kiosk.key, enrollRequest(world, state.plan), delivery.key))
        .pipe(
          Effect.catchTag("DeviceGaveUp", () => Effect.succeed(undefined))
        )
      if (reply === undefined) {
        delivery.status = "gave-up"
        return
      }
      record(delivery, reply)
      if (reply.status < 300) world.stats.inc("enrolled")
      else world.stats.inc("enrollRejected")
      if (reply.status < 300 && world.capabilities.has("POST", "/v1/verify")) {
        yield* verifyAtKiosk(world, f, state, kiosk)
      }
    })

  /**
   * The kiosk checks the enrollment took: a fresh capture of the person must match (1:1), and now
   * and then a capture of the next person in the queue must not.
   */
  const verifyAtKiosk = (world: World, f: Fleet, state: PersonState, kiosk: Kiosk) =>
    Effect.gen(function*() {
      const faces = model(world.options.seed)
      const rng = state.plan.rng.fork("verify")
      const impostor = rng.chance(0.3)
      const face = impostor ? `someone-else-${state.plan.ref}` : state.plan.ref
      const reply = yield* kiosk.client.call(device.verify(kiosk.key, state.plan.id, faces.capture(face, rng))).pipe(
        Effect.option
      )
      if (reply._tag === "Some" && reply.value.status === 200) {
        f.verifications.push({ person: state.plan.id, genuine: !impostor, decision: String(reply.value.body.decision) })
      }
    })

  const sellTicket = (world: World, f: Fleet, state: PersonState) =>
    Effect.gen(function*() {
      if (world.provider === undefined || f.providerEvent === undefined) return
      const created = yield* world.provider.control("POST", `/_sim/events/${f.providerEvent}/tickets`, {
        count: 1,
        holderReference: state.plan.ref
      })
      const ticket = Array.isArray(created) ? created[0] : created
      state.ticket = { id: Number(ticket.id), secret: String(ticket.secret) }
      world.stats.inc("ticketsSold")
    })

  const scan = (
    world: World,
    f: Fleet,
    person: PlannedPerson | undefined,
    direction: "entry" | "exit",
    probeRng: string
  ) =>
    Effect.gen(function*() {
      const rng = person?.rng ?? world.rng.fork(probeRng)
      const gate = rng.pick(f.gates)
      const faces = model(world.options.seed)
      const face = person?.ref ?? `stranger-${probeRng}`
      const nonce = uuidFrom(rng)
      const s: Scan = {
        nonce,
        eventId: f.eventId,
        gate: gate.name,
        direction,
        probe: faces.capture(face, rng.fork(`probe-${nonce}`)),
        deviceTime: new Date(),
        offline: world.offline.gate
      }
      const rec: ScanRecord = {
        key: `scan-${nonce}`,
        deviceId: gate.deviceId,
        nonce,
        person,
        direction,
        offline: s.offline,
        status: "pending",
        answers: [],
        decision: undefined,
        reason: undefined
      }
      f.scans.push(rec)
      world.stats.inc("scans")
      if (person === undefined || person.role === "stranger") world.stats.inc("strangerScans")
      if (s.offline) {
        // The gate cannot reach the service: it lets the person through and keeps the fact to upload.
        gate.buffer.push(rec)
        pendingScans.set(rec.nonce, s)
        world.stats.inc("offlineBuffered")
        return rec
      }
      const reply = yield* gate.client.call(device.admit(gate.key, s, rec.key)).pipe(
        Effect.catchTag("DeviceGaveUp", () => Effect.succeed(undefined))
      )
      if (reply === undefined) {
        rec.status = "gave-up"
        return rec
      }
      record(rec, reply)
      rec.decision = reply.body?.decision
      rec.reason = reply.body?.reason ?? undefined
      if (rec.decision === "granted") world.stats.inc("admitted")
      else world.stats.inc("denied")
      if (rec.decision === "denied" && (person === undefined || person.role === "stranger")) {
        world.stats.inc("strangersDenied")
      }
      return rec
    })

  const pendingScans = new Map<string, Scan>()

  /** One person's evening: enroll, maybe be erased, arrive, look into the camera until let in or turned away. */
  const journey = (world: World, f: Fleet, state: PersonState) =>
    Effect.all([
      buysTicket(state.plan)
        ? sleepUntil(f, state.plan.saleAtMs).pipe(Effect.zipRight(sellTicket(world, f, state)))
        : Effect.void,
      evening(world, f, state)
    ], { concurrency: 2, discard: true })

  const evening = (world: World, f: Fleet, state: PersonState) =>
    Effect.gen(function*() {
      const p = state.plan
      const can = world.capabilities
      if (enrolls(p) && can.has("POST", "/v1/people")) {
        yield* sleepUntil(f, p.enrollAtMs)
        yield* enroll(world, f, state)
      }
      if (p.role === "erased" && can.has("DELETE", "/v1/people/{personId}")) {
        yield* waitFor(() => state.enrollment?.status !== "pending", f, world)
        const kiosk = f.kiosks[p.kiosk]!
        const reply = yield* kiosk.client.call(device.erase(kiosk.key, p.id, `erase-${p.id}`)).pipe(Effect.option)
        if (reply._tag === "Some" && reply.value.status < 300) world.stats.inc("erased")
      }
      if (!can.has("POST", "/v1/admissions")) return
      yield* sleepUntil(f, p.arriveAtMs)
      if (shouldEnter(p)) {
        // A ticket holder comes once their ticket reached the venue (synced and linked to them).
        // Nobody waits for a link that cannot come: no ticketing, or an enrollment that was refused.
        const settled = () => state.enrollment === undefined || state.enrollment.status !== "pending"
        const enrolled = () => state.enrollment?.answers.some((a) => a.status < 300) ?? false
        yield* waitFor(() => state.linked || (settled() && (!enrolled() || !f.mapped)), f, world)
      }
      const looks = shouldEnter(p) ? 8 : 3
      for (let look = 0; look < looks; look++) {
        const rec = yield* scan(world, f, p, "entry", `${p.index}-${look}`)
        if (rec.offline || rec.decision === "granted") {
          state.admitted = true
          break
        }
        if (rec.reason !== "no_match" && rec.reason !== "no_ticket") break
        // Denied as unknown: step back and look into the camera again.
        yield* Effect.sleep(Duration.millis(1_000 + p.rng.int(1_500)))
      }
      if (!state.admitted) return
      if (p.doubleEntry) {
        yield* Effect.sleep(Duration.millis(500 + p.rng.int(1_500)))
        yield* scan(world, f, p, "entry", `${p.index}-again`)
      }
      if (p.exits && !world.stopping.value) {
        yield* Effect.sleep(Duration.millis(1_000 + p.rng.int(3_000)))
        yield* scan(world, f, p, "exit", `${p.index}-exit`)
        if (p.reenters) {
          yield* Effect.sleep(Duration.millis(1_000 + p.rng.int(2_000)))
          yield* scan(world, f, p, "entry", `${p.index}-back`)
        }
      }
    })

  /** Waits until `ready` holds, for at most some seconds after the load ended. */
  const waitFor = (ready: () => boolean, _f: Fleet, world: World) =>
    Effect.gen(function*() {
      let after = 0
      while (!ready()) {
        if (world.stopping.value && ++after > 150) return
        yield* Effect.sleep("200 millis")
      }
    })

  const strangers = (world: World, f: Fleet) =>
    Effect.gen(function*() {
      if (!world.capabilities.has("POST", "/v1/admissions")) return
      // Passers-by who never enrolled walk up to the gates while the doors are open.
      if (!world.capabilities.has("POST", "/v1/admissions")) return
      const rng = world.rng.fork("passers-by")
      const count = Math.max(2, Math.round(world.options.people * 0.05))
      yield* Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) =>
        Effect.gen(function*() {
          yield* sleepUntil(f, Math.round((0.3 + 0.5 * rng.next()) * world.options.durationSeconds * 1000))
          yield* scan(world, f, undefined, "entry", `passer-${i}`)
        }), { concurrency: "unbounded", discard: true })
    })

  /**
   * Uploads a device's buffered messages in batches (`POST /v1/device-messages`) while it is
   * online, or whatever the network when `final` (the drain), and sometimes sends a batch twice.
   * Each item's result is its message's answer; an item without a final answer (nothing stored:
   * another copy running, a server failure, or not attempted after one) stays buffered for the next
   * upload, and so does every unanswered item of a batch cut short: a device never drops what it
   * buffered. Items the service keeps failing are resent a bounded number of times per call; the
   * last call then gives them up, like any request resent too often.
   */
  const uploadBuffer = <B>(
    world: World,
    dev: Device & { readonly buffer: Array<B> },
    online: () => boolean,
    final: boolean,
    message: (b: B, resend: boolean) => { readonly id: string; readonly type: string; readonly body: unknown },
    answered: (b: B, answer: Reply) => void,
    gaveUp: (b: B) => void
  ) =>
    Effect.gen(function*() {
      let budget = Math.ceil(dev.buffer.length / 20) + 10
      while (dev.buffer.length > 0 && (online() || final)) {
        if (budget-- <= 0) {
          if (final) { for (const b of dev.buffer.splice(0)) gaveUp(b) }
          return
        }
        const batch = dev.buffer.splice(0, 20)
        const settled = new Set<number>()
        const putBack = Effect.sync(() => {
          dev.buffer.unshift(...batch.filter((_, i) => !settled.has(i)))
        })
        const sends = world.rng.chance(world.options.schedule.rates.resendBatch) ? 2 : 1
        yield* Effect.gen(function*() {
          for (let n = 0; n < sends; n++) {
            if (n > 0) world.stats.inc("batchesResent")
            world.stats.inc("batches")
            const items = batch.map((b) => message(b, n > 0))
            const reply = yield* dev.client.call(device.messages(dev.key, items, `batch-${uuidFrom(world.rng)}`)).pipe(
              Effect.option
            )
            if (reply._tag === "None" || reply.value.status !== 200) continue
            const results: Array<any> = reply.value.body?.results ?? []
            batch.forEach((b, i) => {
              const result = results[i]
              if (result === undefined || result.retry === true) return
              const answer: Reply = {
                status: Number(result.status),
                body: result.body ?? result.problem,
                replayed: result.replayed === true,
                attempts: reply.value.attempts
              }
              if (answer.replayed) world.stats.inc("replays")
              answered(b, answer)
              settled.add(i)
            })
          }
        }).pipe(Effect.onInterrupt(() => putBack))
        if (settled.size < batch.length) {
          yield* putBack
          yield* Effect.sleep("200 millis")
        }
      }
    })

  /** Uploads buffered enrollments. */
  const kioskUploads = (world: World, kiosk: Kiosk, final: boolean) =>
    uploadBuffer(
      world,
      kiosk,
      () => !world.offline.kiosk,
      final,
      (b) => ({ id: b.delivery.key, type: "enroll", body: b.body }),
      (b, answer) => {
        const wasPending = b.delivery.status === "pending"
        record(b.delivery, answer)
        if (wasPending) world.stats.inc(answer.status < 300 ? "enrolled" : "enrollRejected")
      },
      (b) => {
        if (b.delivery.status === "pending") b.delivery.status = "gave-up"
      }
    )

  const offlineAnswer = (world: World, rec: ScanRecord, answer: Reply) => {
    if (rec.status === "pending" && answer.status < 300) {
      world.stats.inc("offlineUploaded")
      if (answer.body?.flagged != null) world.stats.inc("offlineFlagged")
    }
    record(rec, answer)
    rec.decision = answer.body?.decision
    rec.reason = answer.body?.reason ?? undefined
  }

  /**
   * Uploads a gate's offline scans late: they are facts, recorded as they happened. In batches
   * when the service takes admission messages, else one request per scan. A resend after
   * reconnecting carries a new message id (Idempotency-Key) for the same scan: its nonce alone
   * must make it return the first outcome.
   */
  const gateUploads = (world: World, gate: Gate, final: boolean) =>
    world.capabilities.hasSchema("AdmissionMessage")
      ? uploadBuffer(
        world,
        gate,
        () => !world.offline.gate,
        final,
        (rec, resend) => ({
          id: resend ? `${rec.key}-resent` : rec.key,
          type: "admission",
          body: scanBody(pendingScans.get(rec.nonce)!)
        }),
        (rec, answer) => offlineAnswer(world, rec, answer),
        (rec) => {
          if (rec.status === "pending") rec.status = "gave-up"
        }
      )
      : Effect.gen(function*() {
        while (gate.buffer.length > 0 && (!world.offline.gate || final)) {
          // Taken off the buffer only once answered: an upload cut short is tried again.
          const rec = gate.buffer[0]!
          const s = pendingScans.get(rec.nonce)!
          const sends = world.rng.chance(world.options.schedule.rates.resendBatch) ? 2 : 1
          for (let n = 0; n < sends; n++) {
            if (n > 0) world.stats.inc("batchesResent")
            const key = n === 0 ? rec.key : `${rec.key}-resent`
            const reply = yield* gate.client.call(device.admit(gate.key, s, key)).pipe(Effect.option)
            if (reply._tag === "Some") offlineAnswer(world, rec, reply.value)
          }
          if (rec.status === "pending" && !final) return
          gate.buffer.shift()
          if (rec.status === "pending") rec.status = "gave-up"
        }
      })

  const uploaders = (world: World, f: Fleet) =>
    Effect.gen(function*() {
      while (!world.stopping.value) {
        yield* Effect.forEach(f.kiosks, (k) => kioskUploads(world, k, false), {
          concurrency: "unbounded",
          discard: true
        })
        yield* Effect.forEach(f.gates, (g) => gateUploads(world, g, false), { concurrency: "unbounded", discard: true })
        yield* Effect.sleep("500 millis")
      }
    })

  /** Watches the event's synced tickets as a gate would, to know who can be expected at the door. */
  const syncWatch = (world: World, f: Fleet) =>
    Effect.gen(function*() {
      if (!world.capabilities.has("GET", "/v1/events/{eventId}/tickets")) return
      const gate = f.gates[0]!
      const byRef = new Map(f.people.map((p) => [p.plan.ref, p]))
      while (true) {
        const reply = yield* gate.client.call({ ...device.tickets(gate.key, f.eventId), faults: false }).pipe(
          Effect.option
        )
        if (reply._tag === "Some" && reply.value.status === 200) {
          const tickets: Array<any> = reply.value.body?.tickets ?? []
          world.stats.set("ticketsSynced", tickets.length)
          for (const t of tickets) {
            const person = byRef.get(t.holderReference)
            if (person !== undefined && t.link?.personId === person.plan.id) person.linked = true
          }
        }
        if (world.provider !== undefined) {
          const written = yield* world.provider.control("GET", "/_sim/checkins").pipe(Effect.option)
          if (written._tag === "Some" && Array.isArray(written.value)) {
            world.stats.set("checkinsWrittenBack", written.value.length)
          }
        }
        if (
          world.stopping.value && f.people.every((p) => !buysTicket(p.plan) || p.linked || p.ticket === undefined)
        ) return
        yield* Effect.sleep("1 second")
      }
    })

  const load = (world: World) =>
    Effect.scoped(Effect.gen(function*() {
      const f = get()
      f.startedAt = Date.now()
      // A monitoring device polls readiness throughout, so every fault meets traffic.
      const monitor = world.client("monitor")
      const heartbeat = Effect.gen(function*() {
        while (!world.stopping.value) {
          yield* monitor.call({ method: "GET", path: "/health/ready", label: "heartbeat", faults: true }).pipe(
            Effect.ignore
          )
          yield* Effect.sleep("250 millis")
        }
      })
      if (f.venueId === "") return yield* heartbeat
      yield* Effect.forkScoped(heartbeat)
      yield* Effect.forkScoped(uploaders(world, f))
      yield* Effect.forkScoped(syncWatch(world, f))
      yield* Effect.forkScoped(strangers(world, f))
      yield* Effect.forEach(f.people, (state) => journey(world, f, state), { concurrency: "unbounded", discard: true })
    }))

  const drain = (world: World) =>
    Effect.gen(function*() {
      const f = get()
      yield* Effect.forEach(f.kiosks, (k) => kioskUploads(world, k, true), { concurrency: "unbounded", discard: true })
      yield* Effect.forEach(f.gates, (g) => gateUploads(world, g, true), { concurrency: "unbounded", discard: true })
      yield* settle(world, f)
    })

  const checks = (world: World) =>
    Effect.gen(function*() {
      const f = get()
      if (f.venueId === "") {
        return [skip("the fleet ran", "the service offers no venue administration yet: only health probes ran")]
      }
      return yield* fleetChecks(world, f)
    })

  return { name: "fleet", setup, load, drain, checks }
}

/**
 * Waits until the background work the devices caused has settled: no inbox claim still held, the
 * outbox and the work queue empty (delivered, or parked as dead letters), every ticket sold in
 * the provider synced, and linked when its holder is enrolled. The drain's timeout bounds it; what
 * is left then fails the checks.
 */
const settle = (world: World, f: Fleet) =>
  Effect.gen(function*() {
    const tables = yield* existingTables(world)
    const count = (query: Effect.Effect<ReadonlyArray<{ readonly n: number }>, unknown>) =>
      Effect.map(query, (rows) => rows[0]?.n ?? 0)
    const sold = f.people.filter((p) => p.ticket !== undefined).length
    let lastReport = 0
    while (true) {
      const waiting: Array<string> = []
      if (tables.has("inbox_messages")) {
        // A claim whose holder died and whose message never came again under its key (the device
        // resent the scan under another) stays behind with an expired lease: only live ones are waited for.
        const n = yield* count(
          world.sql`SELECT count(*)::int AS n FROM inbox_messages WHERE status = 'claimed' AND lease_until > now()`
        )
        if (n > 0) waiting.push(`${n} inbox claims`)
      }
      if (tables.has("outbox")) {
        const n = yield* count(world.sql`SELECT count(*)::int AS n FROM outbox`)
        if (n > 0) waiting.push(`${n} outbox rows`)
      }
      if (tables.has("jobs")) {
        const n = yield* count(world.sql`SELECT count(*)::int AS n FROM jobs`)
        if (n > 0) waiting.push(`${n} queued jobs`)
      }
      if (tables.has("tickets") && f.mapped) {
        const n = yield* count(world.sql`SELECT count(*)::int AS n FROM tickets WHERE event_id = ${f.eventId}`)
        if (n < sold) waiting.push(`${sold - n} tickets to sync`)
      }
      if (tables.has("ticket_links") && f.mapped) {
        // A holder enrolled late (a kiosk's buffered upload) is linked at the next sync run.
        const n = yield* count(world.sql`
          SELECT count(*)::int AS n FROM tickets t
          JOIN people p ON p.venue_id = ${f.venueId} AND p.external_ref = t.holder_reference
          WHERE t.event_id = ${f.eventId} AND t.status = 'valid'
            AND NOT EXISTS (SELECT 1 FROM ticket_links l WHERE l.ticket_id = t.id AND l.revoked_at IS NULL)
        `)
        if (n > 0) waiting.push(`${n} tickets to link`)
      }
      if (waiting.length === 0) return
      if (Date.now() - lastReport > 5_000) {
        lastReport = Date.now()
        world.display.event(`waiting for ${waiting.join(", ")}`)
      }
      yield* Effect.sleep("500 millis")
    }
  })

const existingTables = (world: World) =>
  Effect.map(
    world.sql<
      { name: string }
    >`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()`,
    (rows) => new Set(rows.map((r) => r.name))
  )

const fleetChecks = (world: World, f: Fleet) =>
  Effect.gen(function*() {
    const checks: Array<Check> = []
    const tables = yield* existingTables(world)
    if (!world.capabilities.has("POST", "/v1/people")) {
      checks.push(skip("every accepted enrollment applied once", "the service offers no enrollment yet"))
      checks.push(...(yield* ticketChecks(world, f, tables)))
      checks.push(...(yield* messagingChecks(world, tables)))
      return checks
    }

    // Enrollment: each accepted enrollment is one person, and no retry or duplicate made another.
    const sent = f.people.filter((p) => p.enrollment !== undefined)
    const accepted = sent.filter((p) => p.enrollment!.answers.some((a) => a.status < 300))
    const rows = yield* world.sql<{ id: string; external_ref: string | null }>`
      SELECT id::text, external_ref FROM people WHERE venue_id = ${f.venueId}
    `
    const tombstones = yield* world.sql<{ id: string }>`
      SELECT person_id::text AS id FROM tombstones WHERE venue_id = ${f.venueId}
    `
    const present = new Set([...rows.map((r) => r.id), ...tombstones.map((r) => r.id)])
    const sentIds = new Set(sent.map((p) => p.plan.id))
    const missing = accepted.filter((p) => !present.has(p.plan.id)).map((p) => p.plan.id)
    const extra = rows.filter((r) => !sentIds.has(r.id)).map((r) => r.id)
    checks.push(
      missing.length + extra.length === 0
        ? pass(
          "every accepted enrollment applied once",
          `${accepted.length} accepted enrollments, ${rows.length} people and ${tombstones.length} tombstones in the venue, none missing or extra`
        )
        : fail(
          "every accepted enrollment applied once",
          `${missing.length} accepted enrollments without a person, ${extra.length} people nobody enrolled`,
          [...missing, ...extra]
        )
    )

    // Every answer a device got for one message (first, replays, duplicates) must agree.
    const deliveries = [...f.people.flatMap((p) => p.enrollment === undefined ? [] : [p.enrollment]), ...f.scans]

    if (tables.has("inbox_messages")) {
      // A claim left by a killed instance is harmless when the device got its message's answer
      // under another copy (an offline scan resent under a new message id: its nonce decided it);
      // it expires and goes with the retention window. A claim still live after the drain, or one
      // of a message nobody got an answer for, is a message left half-processed.
      const claimed = yield* world.sql<{ scope: string; key: string; live: boolean }>`
        SELECT scope, key, lease_until > now() AS live FROM inbox_messages WHERE status = 'claimed'
      `
      const answeredKeys = new Set(
        deliveries.filter((d) => d.status === "answered").flatMap((d) => [d.key, `${d.key}-resent`])
      )
      const abandoned = claimed.filter((c) => !c.live && answeredKeys.has(c.key))
      const halfDone = claimed.filter((c) => !abandoned.includes(c))
      checks.push(expectNone(
        "no message left half-processed",
        halfDone.map((c) => `${c.scope}/${c.key}`),
        abandoned.length === 0
          ? "no inbox claim outlived the run"
          : `no claim of an unanswered message; ${abandoned.length} expired claim(s) of a copy answered under another message id (the scan's nonce decided it), left to the retention window`,
        (n) => `${n} inbox claims of messages without an answer still held after the drain`
      ))
    }

    const disagreeing = deliveries.filter((d) => new Set(d.answers.map((a) => a.summary)).size > 1)
    checks.push(expectNone(
      "replays returned the first outcome",
      disagreeing.map((d) => d.key),
      `${deliveries.reduce((n, d) => n + d.answers.length, 0)} answers to ${deliveries.length} messages agree`,
      (n) => `${n} messages got different answers on resend`
    ))

    if (tables.has("admissions") && world.capabilities.has("POST", "/v1/admissions")) {
      const admissions = yield* world.sql<{
        id: number
        device_id: string
        nonce: string
        ticket_id: string | null
        direction: "entry" | "exit"
        decision: string
        reason: string | null
        flagged: string | null
        offline: boolean
        person_id: string | null
      }>`
        SELECT id, device_id::text, nonce, ticket_id, direction, decision, reason, flagged, offline, person_id::text
        FROM admissions WHERE event_id = ${f.eventId} ORDER BY id
      `
      const byNonce = new Map(admissions.map((a) => [`${a.device_id}/${a.nonce}`, a]))
      const answered = f.scans.filter((s) => s.answers.some((a) => a.status < 300))
      const lost = answered.filter((s) => !byNonce.has(`${s.deviceId}/${s.nonce}`)).map((s) => s.nonce)
      const mismatched = answered.filter((s) => {
        const row = byNonce.get(`${s.deviceId}/${s.nonce}`)
        return row !== undefined && s.decision !== undefined && row.decision !== s.decision
      }).map((s) => s.nonce)
      const scanned = new Set(f.scans.map((s) => `${s.deviceId}/${s.nonce}`))
      const unknown = admissions.filter((a) => !scanned.has(`${a.device_id}/${a.nonce}`)).map((a) => a.nonce)
      checks.push(
        lost.length + mismatched.length + unknown.length === 0
          ? pass(
            "every accepted scan applied once",
            `${answered.length} answered scans, ${admissions.length} admission records, one each`
          )
          : fail(
            "every accepted scan applied once",
            `${lost.length} answered scans without a record, ${mismatched.length} records that differ from the answer, ${unknown.length} records of no scan`,
            [...lost, ...mismatched, ...unknown]
          )
      )
      checks.push(expectNone(
        "a scan nonce is recorded once",
        duplicates(admissions, (a) => `${a.device_id}/${a.nonce}`),
        `${admissions.length} records, no nonce twice`,
        (n) => `${n} nonces recorded more than once`
      ))

      const passages = admissions
        .filter((a) => a.decision === "granted" && a.flagged === null && a.ticket_id !== null)
        .map((a) => ({ ticket: a.ticket_id!, direction: a.direction, order: a.id }))
      checks.push(expectNone(
        "no ticket admitted twice between exits",
        admittedTwice(passages),
        `${passages.length} granted passages over ${new Set(passages.map((p) => p.ticket)).size} tickets`,
        (n) => `${n} tickets entered twice without leaving`
      ))

      const offline = f.scans.filter((s) => s.offline)
      const notUploaded = offline.filter((s) => !byNonce.has(`${s.deviceId}/${s.nonce}`)).map((s) => s.nonce)
      checks.push(
        offline.length === 0
          ? skip("every offline scan uploaded and recorded", "no gate was offline during the run")
          : expectNone(
            "every offline scan uploaded and recorded",
            notUploaded,
            `${offline.length} offline scans recorded as facts, ${
              flaggedSummary(offline.map((s) => byNonce.get(`${s.deviceId}/${s.nonce}`)?.flagged ?? null))
            }`,
            (n) => `${n} offline scans never reached the database`
          )
      )

      // Rates: genuine attendees get in; strangers and people without a valid ticket never do.
      const eligible = f.people.filter((p) =>
        shouldEnter(p.plan) && p.linked && p.enrollment?.answers.some((a) => a.status < 300)
      )
      const entered = new Set(
        admissions.filter((a) => a.direction === "entry" && a.decision === "granted" && a.person_id !== null)
          .map((a) => a.person_id!)
      )
      const notAdmitted = eligible.filter((p) => !entered.has(p.plan.id) && !p.admitted)
      checks.push(rateCheck(
        "genuine attendees admitted",
        "attendees with a linked ticket admitted",
        eligible.length - notAdmitted.length,
        eligible.length,
        { atLeast: 0.95 },
        notAdmitted.map((p) => p.plan.id)
      ))
      const outsiders = f.scans.filter((s) =>
        s.direction === "entry" && !s.offline && (s.person === undefined || !shouldEnter(s.person))
      )
      const letIn = outsiders.filter((s) => byNonce.get(`${s.deviceId}/${s.nonce}`)?.decision === "granted")
      checks.push(rateCheck(
        "strangers and people without a valid ticket denied",
        "online scans of people who must not enter were denied",
        outsiders.length - letIn.length,
        outsiders.length,
        { atLeast: 1 },
        letIn.map((s) => s.nonce)
      ))
      checks.push(yield* writeBackCheck(world, admissions))
    } else {
      checks.push(skip("no ticket admitted twice between exits", "the service has no admissions yet"))
    }

    if (f.verifications.length > 0) {
      const genuine = f.verifications.filter((v) => v.genuine)
      const impostors = f.verifications.filter((v) => !v.genuine)
      const missed = genuine.filter((v) => v.decision !== "match")
      const accepted = impostors.filter((v) => v.decision === "match")
      checks.push(rateCheck(
        "genuine verifications matched",
        "fresh captures of the enrolled person matched 1:1",
        genuine.length - missed.length,
        genuine.length,
        { atLeast: 0.99 },
        missed.map((v) => v.person)
      ))
      checks.push(rateCheck(
        "impostor verifications refused",
        "captures of someone else refused 1:1",
        impostors.length - accepted.length,
        impostors.length,
        { atLeast: 1 },
        accepted.map((v) => v.person)
      ))
    }
    checks.push(...(yield* ticketChecks(world, f, tables)))
    checks.push(...(yield* messagingChecks(world, tables)))
    return checks
  })

/** How many facts were flagged, by reason: "3 flagged (already_admitted 2, no_match 1)". */
const flaggedSummary = (flags: ReadonlyArray<string | null>): string => {
  const counts = new Map<string, number>()
  for (const flag of flags) if (flag !== null) counts.set(flag, (counts.get(flag) ?? 0) + 1)
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  return total === 0
    ? "none flagged"
    : `${total} flagged (${[...counts].map(([reason, n]) => `${reason} ${n}`).join(", ")})`
}

/**
 * Every granted check-in of a synced ticket reached the provider (the simulator) exactly once by
 * the end: one check-in under the scan's provider nonce, of the scan's direction, or a dead letter
 * that says why not. The simulator keeps one check-in per nonce and counts the requests behind it:
 * a resend after a crash is the at-least-once delivery the nonce exists for, not a second check-in.
 */
const writeBackCheck = (
  world: World,
  admissions: ReadonlyArray<
    {
      readonly id: number
      readonly device_id: string
      readonly nonce: string
      readonly ticket_id: string | null
      readonly direction: "entry" | "exit"
      readonly decision: string
    }
  >
) =>
  Effect.gen(function*() {
    const name = "every granted check-in written back to the provider once"
    const subscribed = yield* world.sql<{ n: number }>`
      SELECT count(*)::int AS n FROM queue_subscriptions WHERE topic = 'admission.checked_in'
    `
    if (world.provider === undefined || (subscribed[0]?.n ?? 0) === 0) {
      return skip(name, "the service does not write check-ins back to the provider")
    }
    const written: Array<{ nonce: string; type: string; status: number; requests: number }> = yield* world.provider
      .control("GET", "/_sim/checkins")
    world.stats.set("checkinsWrittenBack", written.length)
    const dead = yield* world.sql<{ admission_id: string; last_error: string }>`
      SELECT payload->>'admissionId' AS admission_id, last_error FROM dead_letters WHERE topic = 'admission.checked_in'
    `
    const parked = new Map(dead.map((d) => [Number(d.admission_id), d.last_error]))
    const byNonce = new Map(written.map((c) => [c.nonce, c]))
    const granted = admissions.filter((a) => a.decision === "granted" && a.ticket_id !== null)
    const nonceOf = (a: { readonly device_id: string; readonly nonce: string }) => `gatehouse:${a.device_id}:${a.nonce}`
    const expected = new Set(granted.map(nonceOf))

    const missing = granted.filter((a) => !byNonce.has(nonceOf(a)) && !parked.has(a.id))
    const wrongType = granted.filter((a) => {
      const c = byNonce.get(nonceOf(a))
      return c !== undefined && c.type !== a.direction
    })
    const silent = granted.filter((a) => parked.get(a.id)?.trim() === "")
    const unknown = written.filter((c) => !expected.has(c.nonce))
    const resent = written.filter((c) => c.requests > 1)
    const declined = written.filter((c) => c.status >= 300)
    if (missing.length + wrongType.length + silent.length + unknown.length > 0) {
      return fail(
        name,
        `${missing.length} granted check-ins never reached the provider nor a dead letter, ${wrongType.length} written with ` +
          `the wrong direction, ${silent.length} parked without a reason, ${unknown.length} provider check-ins of no granted scan`,
        [
          ...missing.map((a) => `admission ${a.id}`),
          ...wrongType.map((a) => `admission ${a.id}`),
          ...silent.map((a) => `admission ${a.id}`),
          ...unknown.map((c) => `provider nonce ${c.nonce}`)
        ]
      )
    }
    return pass(
      name,
      `${granted.length} granted check-ins of synced tickets: ${
        granted.length - parked.size
      } in the provider once each` +
        ` (${declined.length} declined by it, ${resent.length} sent more than once and kept once by nonce), ` +
        `${parked.size} dead-lettered with a reason`
    )
  })

/** Sync lost no ticket, and each ticket links to the person who enrolled under its holder reference. */
const ticketChecks = (world: World, f: Fleet, tables: ReadonlySet<string>) =>
  Effect.gen(function*() {
    if (!f.mapped || !tables.has("tickets")) {
      return [skip("every ticket sold was synced and linked", "the service does not sync tickets yet")]
    }
    const rows = yield* world.sql<
      { provider_ticket_id: number; holder_reference: string | null; person_id: string | null }
    >`
      SELECT t.provider_ticket_id, t.holder_reference, l.person_id::text
      FROM tickets t LEFT JOIN ticket_links l ON l.ticket_id = t.id AND l.revoked_at IS NULL
      WHERE t.event_id = ${f.eventId}
    `
    const synced = new Map(rows.map((r) => [r.provider_ticket_id, r]))
    const sold = f.people.filter((p) => p.ticket !== undefined)
    const unsynced = sold.filter((p) => !synced.has(p.ticket!.id)).map((p) => `ticket ${p.ticket!.id}`)
    const unlinked = sold.filter((p) =>
      p.plan.role === "attendee" && p.enrollment?.answers.some((a) => a.status < 300) &&
      synced.get(p.ticket!.id)?.person_id !== p.plan.id
    ).map((p) => `ticket ${p.ticket!.id} of ${p.plan.id}`)
    const wrong = rows.filter((r) => {
      if (r.person_id === null) return false
      const holder = f.people.find((p) => p.plan.id === r.person_id)
      return holder === undefined || holder.plan.ref !== r.holder_reference
    }).map((r) => `ticket ${r.provider_ticket_id}`)
    return [
      unsynced.length + unlinked.length + wrong.length === 0
        ? pass(
          "every ticket sold was synced and linked",
          `${sold.length} tickets sold in the provider, ${rows.length} synced, ${
            rows.filter((r) => r.person_id !== null).length
          } linked to the person enrolled under their holder reference`
        )
        : fail(
          "every ticket sold was synced and linked",
          `${unsynced.length} sold tickets never synced, ${unlinked.length} not linked to their enrolled holder, ${wrong.length} linked to someone else`,
          [...unsynced, ...unlinked, ...wrong]
        )
    ]
  })

/**
 * Nothing accepted is lost in the messaging core: after the drain the outbox and the work queue are
 * empty, so every row was delivered or parked as a dead letter, and every dead letter says why.
 */
const messagingChecks = (world: World, tables: ReadonlySet<string>) =>
  Effect.gen(function*() {
    if (!tables.has("outbox")) return [skip("no message lost", "the service has no outbox yet")]
    const pending = yield* world.sql<{ id: string; topic: string; last_error: string | null }>`
      SELECT 'outbox ' || id AS id, topic, last_error FROM outbox
      UNION ALL
      SELECT 'job ' || id AS id, topic, last_error FROM jobs
    `
    const dead = yield* world.sql<{ id: number; source: string; topic: string; last_error: string }>`
      SELECT id, source, topic, last_error FROM dead_letters ORDER BY id
    `
    const silent = dead.filter((d) => d.last_error.trim() === "")
    const reasons = [...new Set(dead.map((d) => `${d.topic}: ${d.last_error.slice(0, 80)}`))].slice(0, 3)
    if (pending.length + silent.length > 0) {
      return [fail(
        "no message lost",
        `${pending.length} outbox rows or jobs never delivered, ${silent.length} dead letters without a reason`,
        [
          ...pending.map((p) => `${p.id} (${p.topic}${p.last_error === null ? "" : `: ${p.last_error.slice(0, 60)}`})`),
          ...silent.map((d) => `dead letter ${d.id}`)
        ]
      )]
    }
    return [pass(
      "no message lost",
      `outbox and queue drained; ${dead.length} dead letters, each with its reason${
        reasons.length === 0 ? "" : ` (${reasons.join("; ")})`
      }`
    )]
  })

export const fleetScenario = makeFleetScenario()
