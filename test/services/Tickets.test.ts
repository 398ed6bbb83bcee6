import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck, Layer } from "effect"
import type { ProviderTicket, TicketStatus } from "../../src/domain/Ticket.js"
import { Audit } from "../../src/services/Audit.js"
import { Tickets } from "../../src/services/Tickets.js"
import { insertVenueWithEvent, TestDatabaseLive } from "../support/Database.js"
import { inGallery, insertPerson } from "../support/Ticketing.js"

const TestLive = Tickets.layer.pipe(Layer.provide(Audit.layer), Layer.provideMerge(TestDatabaseLive))

const venueWithEvent = insertVenueWithEvent().pipe(Effect.orDie)

const holders = ["h0", "h1", "h2", null] as const

/** Each ticket's history: snapshots in the provider's order, later ones newer (some only by version). */
const histories = FastCheck.array(
  FastCheck.array(
    FastCheck.record({
      status: FastCheck.constantFrom<TicketStatus>("valid", "valid", "cancelled", "refunded", "transferred"),
      holder: FastCheck.constantFrom(...holders),
      sameInstant: FastCheck.boolean()
    }),
    { minLength: 1, maxLength: 4 }
  ),
  { minLength: 1, maxLength: 6 }
).map((tickets) =>
  tickets.map((history, i) => {
    let at = Date.UTC(2027, 0, 1)
    return history.map((s, version): ProviderTicket => {
      if (!s.sameInstant) at += 1000
      return {
        providerId: i + 1,
        order: `O${i}`,
        secret: `secret-${i}`,
        holderReference: s.holder,
        status: s.status,
        modified: new Date(at),
        version: version + 1
      }
    })
  })
)

/** Delivery: every snapshot at least once, some twice, in any order, cut into pages of any size. */
const delivery = (all: ReadonlyArray<ProviderTicket>) =>
  FastCheck.tuple(
    FastCheck.shuffledSubarray([...all], { minLength: 0 }),
    FastCheck.integer({ min: 1, max: 5 })
  ).chain(([again, pageSize]) =>
    FastCheck.shuffledSubarray([...all, ...again], { minLength: all.length + again.length }).map((order) => {
      const pages: Array<Array<ProviderTicket>> = []
      for (let i = 0; i < order.length; i += pageSize) pages.push(order.slice(i, i + pageSize))
      return pages
    })
  )

const scenario = histories.chain((h) => delivery(h.flat()).map((pages) => ({ histories: h, pages })))

describe("Tickets", () => {
  it.layer(TestLive)((it) => {
    it.effect.prop(
      "ends where the newest snapshot of each ticket says, for any duplication and reordering of pages",
      [scenario],
      ([{ histories, pages }]) =>
        Effect.gen(function*() {
          const tickets = yield* Tickets
          const { eventId, venueId } = yield* venueWithEvent
          const people = Object.fromEntries(
            yield* Effect.forEach(holders.slice(0, 3), (h) =>
              Effect.map(insertPerson(venueId, `${eventId}:${h}`), (id) => [h, id] as const))
          )
          const scoped = (t: ProviderTicket) => ({
            ...t,
            holderReference: t.holderReference === null ? null : `${eventId}:${t.holderReference}`
          })

          for (const page of pages) {
            yield* Effect.orDie(tickets.apply(eventId, "sim", page.map(scoped)))
          }
          const stored = new Map((yield* Effect.orDie(tickets.list(eventId))).map((t) => [t.providerTicketId, t]))

          for (const history of histories) {
            const newest = history[history.length - 1]!
            const ticket = stored.get(newest.providerId)!
            expect([ticket.status, ticket.providerVersion]).toEqual([newest.status, newest.version])
            const expected = newest.status === "valid" && newest.holderReference !== null
              ? people[newest.holderReference]
              : undefined
            expect(ticket.link?.personId).toBe(expected)
          }
          expect(stored.size).toBe(histories.length)
        }),
      { fastCheck: { numRuns: 25 } }
    )

    it.effect("links at enrollment: a person given an external reference gets the venue's matching tickets", () =>
      Effect.gen(function*() {
        const tickets = yield* Tickets
        const { eventId, venueId } = yield* venueWithEvent
        const ticket: ProviderTicket = {
          providerId: 1,
          order: "A",
          secret: "s-1",
          holderReference: `ref-${eventId}`,
          status: "valid",
          modified: new Date(),
          version: 1
        }
        yield* Effect.orDie(tickets.apply(eventId, "sim", [ticket]))

        const personId = yield* insertPerson(venueId, `ref-${eventId}`)
        const linked = yield* Effect.orDie(tickets.linkHolder(personId))
        const again = yield* Effect.orDie(tickets.linkHolder(personId))

        expect([linked, again]).toEqual([1, 0])
        expect(yield* inGallery(eventId, personId)).toBe(true)
        expect((yield* Effect.orDie(tickets.ofPerson(eventId, personId))).map((t) => t.secret)).toEqual(["s-1"])
      }))

    it.effect("keeps a person without active consent out of the gallery although they hold a linked ticket", () =>
      Effect.gen(function*() {
        const tickets = yield* Tickets
        const { eventId, venueId } = yield* venueWithEvent
        const personId = yield* insertPerson(venueId, `w-${eventId}`, "withdrawn")

        yield* Effect.orDie(tickets.apply(eventId, "sim", [{
          providerId: 1,
          order: "A",
          secret: "s-w",
          holderReference: `w-${eventId}`,
          status: "valid",
          modified: new Date(),
          version: 1
        }]))

        expect(yield* Effect.orDie(tickets.ofPerson(eventId, personId))).toHaveLength(1)
        expect(yield* inGallery(eventId, personId)).toBe(false)
      }))
  })
})
