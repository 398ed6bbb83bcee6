import { makeRng, type Rng, uuidFrom } from "./Random.js"

/**
 * Who comes to the event. Attendees enroll at a kiosk and buy a ticket under the reference they
 * enrolled with; some people enroll without a ticket; some attendees ask to be erased before the
 * doors open; strangers never enrolled. Each person has their own random stream and timeline.
 */
export type Role = "attendee" | "erased" | "no-ticket" | "stranger"

export interface PlannedPerson {
  readonly index: number
  readonly id: string
  /** The holder reference the ticket carries and the person enrolls with. */
  readonly ref: string
  readonly role: Role
  readonly kiosk: number
  /** Milliseconds from the start of the load. */
  readonly enrollAtMs: number
  readonly saleAtMs: number
  readonly arriveAtMs: number
  /** Once inside, scans again at another gate (a tailgating attempt the list must refuse). */
  readonly doubleEntry: boolean
  /** Leaves and, maybe, comes back. */
  readonly exits: boolean
  readonly reenters: boolean
  readonly rng: Rng
}

export interface PopulationOptions {
  readonly seed: string
  readonly people: number
  readonly durationMs: number
  readonly kiosks: number
}

/** Shares of the roles; the rest are attendees. */
export const roleShares = { erased: 0.05, "no-ticket": 0.1, stranger: 0.15 } as const

const roleOf = (u: number): Role =>
  u < roleShares.stranger
    ? "stranger"
    : u < roleShares.stranger + roleShares["no-ticket"]
    ? "no-ticket"
    : u < roleShares.stranger + roleShares["no-ticket"] + roleShares.erased
    ? "erased"
    : "attendee"

export const population = (options: PopulationOptions): Array<PlannedPerson> => {
  const d = options.durationMs
  const between = (rng: Rng, from: number, to: number) => Math.round((from + (to - from) * rng.next()) * d)
  return Array.from({ length: options.people }, (_, index) => {
    const rng = makeRng(`${options.seed}:person:${index}`)
    const role = roleOf(rng.next())
    const enrollAtMs = between(rng, 0.02, 0.4)
    const saleAtMs = between(rng, 0, 0.3)
    // Doors open at 30% of the run; nobody arrives before their enrollment could have landed.
    const arriveAtMs = Math.max(between(rng, 0.3, 0.8), enrollAtMs + Math.round(0.05 * d))
    return {
      index,
      id: uuidFrom(rng),
      ref: `sim-${options.seed}-${index}`,
      role,
      kiosk: index % options.kiosks,
      enrollAtMs,
      saleAtMs,
      arriveAtMs,
      doubleEntry: rng.chance(0.2),
      exits: rng.chance(0.25),
      reenters: rng.chance(0.5),
      rng: rng.fork("journey")
    }
  })
}

/** Whether the person enrolls at a kiosk. */
export const enrolls = (p: PlannedPerson) => p.role !== "stranger"
/** Whether the person buys a ticket in the provider. */
export const buysTicket = (p: PlannedPerson) => p.role === "attendee" || p.role === "erased"
/** Whether a correct service lets the person in. */
export const shouldEnter = (p: PlannedPerson) => p.role === "attendee"
