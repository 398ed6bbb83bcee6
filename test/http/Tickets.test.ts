import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { ProviderSim } from "../../src/sim/ProviderSim.js"
import { eventually } from "../support/Eventually.js"
import { request } from "../support/Http.js"
import { createDevice, createEvent, createVenue, createVenueAndDevice, enroll } from "../support/Identity.js"
import { adminKey } from "../support/Server.js"
import { inGallery, insertPerson, listTickets, mapEvent, syncNow, TicketingServerLive } from "../support/Ticketing.js"

/** A venue, an event of it, and a fresh provider event with `tickets` tickets, mapped and synced once. */
const setup = (slug: string, tickets = 0, holder?: (i: number) => string | null) =>
  Effect.gen(function*() {
    const sim = yield* ProviderSim
    const { venueId } = yield* createVenue()
    const { eventId } = yield* createEvent(venueId)
    sim.addEvent({ slug })
    for (let i = 0; i < tickets; i++) {
      sim.addTicket(slug, holder === undefined ? {} : { holderReference: holder(i) })
    }
    yield* mapEvent(eventId, slug)
    return { sim, venueId, eventId }
  })

const byProviderId = (tickets: Array<any>) => new Map(tickets.map((t) => [t.providerTicketId, t]))

describe("ticket sync and links", () => {
  // A short sync lease, so that runs outlasting it and crashed holders fit in a test.
  layer(TicketingServerLive({}, { ticketSyncLeaseMs: 1_500 }), { excludeTestServices: true })((it) => {
    it.effect("maps an event to a provider event, syncs every page and lists the tickets", () =>
      Effect.gen(function*() {
        const { eventId, sim } = yield* setup("concert", 25)

        const tickets = yield* listTickets(eventId)
        const mapping = yield* request("GET", `/v1/admin/events/${eventId}/provider`, { key: adminKey })
        const again = yield* request("PUT", `/v1/admin/events/${eventId}/provider`, {
          key: adminKey,
          body: { providerEvent: "concert" }
        })

        expect(tickets).toHaveLength(25)
        expect(tickets.map((t) => t.secret).sort()).toEqual(
          [...sim.event("concert")!.positions.values()].map((p) => p.secret).sort()
        )
        expect(tickets.every((t) => t.status === "valid" && t.link === null)).toBe(true)
        expect(mapping.body).toMatchObject({ providerEvent: "concert", lastError: null, breaker: "closed" })
        expect(mapping.body.cursor.providerTicketId).toBe(Math.max(...tickets.map((t) => t.providerTicketId)))
        expect(again.status).toBe(200)
      }))

    it.effect("refuses a second provider event for an event, and one provider event for two events", () =>
      Effect.gen(function*() {
        const { eventId, venueId } = yield* setup("mapped-once")
        const other = yield* createEvent(venueId)

        const remap = yield* request("PUT", `/v1/admin/events/${eventId}/provider`, {
          key: adminKey,
          body: { providerEvent: "elsewhere" }
        })
        const taken = yield* request("PUT", `/v1/admin/events/${other.eventId}/provider`, {
          key: adminKey,
          body: { providerEvent: "mapped-once" }
        })
        const badSlug = yield* request("PUT", `/v1/admin/events/${other.eventId}/provider`, {
          key: adminKey,
          body: { providerEvent: "../../etc" }
        })
        const unmapped = yield* syncNow(other.eventId)

        expect(remap.status).toBe(409)
        expect(remap.body.code).toBe("EventAlreadyMapped")
        expect(taken.status).toBe(409)
        expect(taken.body.code).toBe("ProviderEventTaken")
        expect(badSlug.status).toBe(400)
        expect(unmapped.status).toBe(404)
        expect(unmapped.body.code).toBe("EventNotMapped")
      }))

    it.effect("loses no ticket when pages and the cursor share one timestamp", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const { venueId } = yield* createVenue()
        const { eventId } = yield* createEvent(venueId)
        sim.addEvent({ slug: "frozen" })
        // 25 tickets at one instant: more than two pages of 10 share the timestamp.
        sim.freezeClock()
        for (let i = 0; i < 25; i++) sim.addTicket("frozen")
        yield* mapEvent(eventId, "frozen")
        const first = yield* listTickets(eventId)

        // More tickets at the cursor's own timestamp, and an older ticket changed within it.
        for (let i = 0; i < 12; i++) sim.addTicket("frozen")
        const earlier = [...sim.event("frozen")!.positions.values()][2]!
        sim.cancel(earlier.id)
        sim.unfreezeClock()
        sim.resetCalls()
        const report = yield* syncNow(eventId)
        const second = byProviderId(yield* listTickets(eventId))

        expect(first).toHaveLength(25)
        expect(report.status).toBe(200)
        expect(second.size).toBe(37)
        expect(second.get(earlier.id).status).toBe("cancelled")
        expect(sim.calls().orderpositions).toBeLessThanOrEqual(6)
      }))

    it.effect("renews the lease of a run that outlasts it, and lets a crashed holder's lease lapse", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const { eventId, sim } = yield* setup("lease", 2)
        const lease = sql<{ renewed: boolean; lapsed: boolean; owner: string | null }>`
          SELECT lease_until > last_attempt_at + interval '1750 milliseconds' AS renewed,
                 now() > last_attempt_at + interval '1500 milliseconds' AS lapsed, lease_owner AS owner
          FROM event_provider_links WHERE event_id = ${eventId}
        `.pipe(Effect.map((rows) => rows[0]!), Effect.orDie)

        // A provider page that never answers (until the request times out) holds the run; past
        // its first term the lease is still the run's, renewed, so no other instance starts one.
        yield* Effect.promise(() => sim.setFault({ fault: { type: "hang" } }))
        const slow = yield* Effect.fork(syncNow(eventId))
        yield* eventually(Effect.map(lease, (l) => l.owner !== null && l.renewed && l.lapsed), 300, 10)
        yield* Effect.promise(() => sim.clearFault())
        yield* Fiber.join(slow)
        const released = yield* lease
        // A holder that died with its lease: nobody releases it.
        yield* sql`
          UPDATE event_provider_links SET lease_owner = 'crashed', lease_until = now() + interval '1500 milliseconds'
          WHERE event_id = ${eventId}
        `.pipe(Effect.orDie)
        const blocked = yield* syncNow(eventId)
        yield* eventually(Effect.map(syncNow(eventId), (r) => r.body?.outcome === "synced"), 200, 50)

        expect(released.owner).toBeNull()
        expect(blocked.body).toMatchObject({ outcome: "busy" })
      }))

    it.effect("applies a snapshot only when it is newer than the stored one", () =>
      Effect.gen(function*() {
        const { eventId, sim } = yield* setup("versions", 12)
        const ticket = [...sim.event("versions")!.positions.values()][5]!

        sim.touchTogether("versions")
        const report = yield* syncNow(eventId)
        const replay = yield* syncNow(eventId)
        const stored = byProviderId(yield* listTickets(eventId)).get(ticket.id)

        expect(report.body).toMatchObject({ outcome: "synced", inserted: 0, updated: 12 })
        expect(replay.body).toMatchObject({ inserted: 0, updated: 0 })
        expect(replay.body.stale).toBeGreaterThan(0)
        expect(stored.providerVersion).toBe(2)
      }))

    it.effect("links a ticket to the person whose external reference is its holder, at sync", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const { venueId } = yield* createVenue()
        const { eventId } = yield* createEvent(venueId)
        const ada = yield* insertPerson(venueId, "cust-ada")
        const elsewhere = yield* createVenue()
        const stranger = yield* insertPerson(elsewhere.venueId, "cust-bob")
        sim.addEvent({ slug: "autolink" })
        const adaTicket = sim.addTicket("autolink", { holderReference: "cust-ada" })
        const bobTicket = sim.addTicket("autolink", { holderReference: "cust-bob" })

        yield* mapEvent(eventId, "autolink")
        // Enrolled after the sync: the next run links them.
        const bob = yield* insertPerson(venueId, "cust-bob")
        const before = byProviderId(yield* listTickets(eventId)).get(bobTicket.id)
        yield* syncNow(eventId)
        const tickets = byProviderId(yield* listTickets(eventId))

        expect(tickets.get(adaTicket.id).link).toMatchObject({ personId: ada, source: "holder_reference" })
        expect(before.link).toBeNull()
        expect(tickets.get(bobTicket.id).link).toMatchObject({ personId: bob })
        expect(yield* inGallery(eventId, ada)).toBe(true)
        expect(yield* inGallery(eventId, stranger)).toBe(false)
      }))

    it.effect("links a synced ticket when its holder enrolls, without waiting for the next sync", () =>
      Effect.gen(function*() {
        const sim = yield* ProviderSim
        const device = yield* createVenueAndDevice
        const { eventId } = yield* createEvent(device.venueId)
        sim.addEvent({ slug: "enroll-links" })
        const ticket = sim.addTicket("enroll-links", { holderReference: "cust-eve" })
        yield* mapEvent(eventId, "enroll-links")

        const eve = yield* enroll(device, { externalRef: "cust-eve" })
        const linked = byProviderId(yield* listTickets(eventId)).get(ticket.id)

        expect(linked.link).toMatchObject({ personId: eve.personId, source: "holder_reference" })
        expect(yield* inGallery(eventId, eve.personId)).toBe(true)
      }))

    it.effect("revokes the link of a ticket cancelled or refunded after linking, and drops the holder from the gallery", () =>
      Effect.gen(function*() {
        const { eventId, sim, venueId } = yield* setup("cancel")
        const [ann, ben] = [yield* insertPerson(venueId, "cust-ann"), yield* insertPerson(venueId, "cust-ben")]
        const annTicket = sim.addTicket("cancel", { holderReference: "cust-ann" })
        const benTicket = sim.addTicket("cancel", { holderReference: "cust-ben" })
        yield* syncNow(eventId)
        const linked = [yield* inGallery(eventId, ann), yield* inGallery(eventId, ben)]

        sim.cancel(annTicket.id)
        sim.refund(benTicket.id)
        const report = yield* syncNow(eventId)
        const tickets = byProviderId(yield* listTickets(eventId))
        const claim = yield* request(
          "PUT",
          `/v1/admin/events/${eventId}/tickets/${tickets.get(annTicket.id).ticketId}/link`,
          {
            key: adminKey,
            body: { personId: ann }
          }
        )

        expect(linked).toEqual([true, true])
        expect(report.body.revoked).toBe(2)
        expect(tickets.get(annTicket.id)).toMatchObject({ status: "cancelled", link: null })
        expect(tickets.get(benTicket.id)).toMatchObject({ status: "refunded", link: null })
        expect(yield* inGallery(eventId, ann)).toBe(false)
        expect(yield* inGallery(eventId, ben)).toBe(false)
        expect(claim.status).toBe(409)
        expect(claim.body.code).toBe("TicketNotValid")
      }))

    it.effect("moves a transferred ticket's admission to the new holder", () =>
      Effect.gen(function*() {
        const { eventId, sim, venueId } = yield* setup("transfer")
        const [cleo, dan] = [yield* insertPerson(venueId, "cust-cleo"), yield* insertPerson(venueId, "cust-dan")]
        const original = sim.addTicket("transfer", { holderReference: "cust-cleo" })
        yield* syncNow(eventId)

        const { new: fresh } = sim.transfer(original.id, "cust-dan")
        yield* syncNow(eventId)
        const tickets = byProviderId(yield* listTickets(eventId))

        expect(tickets.get(original.id)).toMatchObject({ status: "transferred", link: null })
        expect(tickets.get(fresh.id)).toMatchObject({ status: "valid", link: { personId: dan } })
        expect(yield* inGallery(eventId, cleo)).toBe(false)
        expect(yield* inGallery(eventId, dan)).toBe(true)
      }))

    it.effect("claims a ticket for one person only: the same claim again is fine, another person is a conflict", () =>
      Effect.gen(function*() {
        const { eventId, sim, venueId } = yield* setup("claims")
        const ticket = sim.addTicket("claims", { holderReference: null })
        yield* syncNow(eventId)
        const ticketId = byProviderId(yield* listTickets(eventId)).get(ticket.id).ticketId
        const people = yield* Effect.forEach(Array.from({ length: 8 }), () => insertPerson(venueId, null))
        const foreign = yield* insertPerson((yield* createVenue()).venueId, null)
        const path = `/v1/admin/events/${eventId}/tickets/${ticketId}/link`

        const racing = yield* Effect.forEach(
          people,
          (personId) => request("PUT", path, { key: adminKey, body: { personId } }),
          { concurrency: "unbounded" }
        )
        const winner = racing.find((r) => r.status === 200)!.body.personId
        const repeat = yield* request("PUT", path, { key: adminKey, body: { personId: winner } })
        const otherVenue = yield* request("PUT", path, { key: adminKey, body: { personId: foreign } })
        const unknown = yield* request("PUT", `/v1/admin/events/${eventId}/tickets/${crypto.randomUUID()}/link`, {
          key: adminKey,
          body: { personId: winner }
        })

        expect(racing.filter((r) => r.status === 200)).toHaveLength(1)
        expect(racing.filter((r) => r.status === 409).every((r) => r.body.code === "TicketAlreadyLinked")).toBe(true)
        expect(racing.filter((r) => r.status === 409)).toHaveLength(7)
        expect(repeat.status).toBe(200)
        expect(repeat.body).toMatchObject({ personId: winner, source: "claim" })
        expect(otherVenue.status).toBe(422)
        expect(unknown.status).toBe(404)
        expect(yield* inGallery(eventId, winner)).toBe(true)
      }))

    it.effect("keeps an unlinked ticket unlinked at later syncs until someone claims it", () =>
      Effect.gen(function*() {
        const { eventId, sim, venueId } = yield* setup("unlink")
        const eve = yield* insertPerson(venueId, "cust-eve")
        const ticket = sim.addTicket("unlink", { holderReference: "cust-eve" })
        yield* syncNow(eventId)
        const ticketId = byProviderId(yield* listTickets(eventId)).get(ticket.id).ticketId
        const path = `/v1/admin/events/${eventId}/tickets/${ticketId}/link`

        const unlinked = yield* request("DELETE", path, { key: adminKey })
        sim.touchTogether("unlink")
        yield* syncNow(eventId)
        const afterSync = byProviderId(yield* listTickets(eventId)).get(ticket.id)
        const claimed = yield* request("PUT", path, { key: adminKey, body: { personId: eve } })

        expect(unlinked.status).toBe(200)
        expect(afterSync.link).toBeNull()
        expect(claimed.status).toBe(200)
      }))

    it.effect("shows an event's tickets to devices of its venue and the admin only", () =>
      Effect.gen(function*() {
        const { eventId, venueId } = yield* setup("visibility", 3)
        const own = yield* createDevice(venueId)
        const other = yield* createVenueAndDevice

        const asDevice = yield* listTickets(eventId, own.key)
        const asStranger = yield* request("GET", `/v1/events/${eventId}/tickets`, { key: other.key })
        const anonymous = yield* request("GET", `/v1/events/${eventId}/tickets`)
        const paged = yield* request("GET", `/v1/events/${eventId}/tickets?limit=2`, { key: own.key })
        const rest = yield* request("GET", `/v1/events/${eventId}/tickets?limit=2&after=${paged.body.next}`, {
          key: own.key
        })

        expect(asDevice).toHaveLength(3)
        expect(asStranger.status).toBe(404)
        expect(anonymous.status).toBe(401)
        expect(paged.body.tickets).toHaveLength(2)
        expect(rest.body.tickets).toHaveLength(1)
        expect(rest.body.next).toBeNull()
      }))
  })
})
