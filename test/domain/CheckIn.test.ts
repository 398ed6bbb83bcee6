import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import {
  decide,
  type Direction,
  emptyLedger,
  firstViolation,
  type Ledger,
  type ListRules,
  type NoncedScan,
  type Outcome,
  outside,
  record,
  type Resolution,
  resolvedTicket,
  unresolved
} from "../../src/domain/CheckIn.js"

const valid = resolvedTicket({ inEvent: true, valid: true })
const cancelled = resolvedTicket({ inEvent: true, valid: false })
const strict: ListRules = { allowReentry: false }
const reentry: ListRules = { allowReentry: true }
const online = (direction: Direction) => ({ direction, offline: false })
const offline = (direction: Direction) => ({ direction, offline: true })

describe("check-in list rules", () => {
  it("grants the first entry and moves the ticket inside", () => {
    const { outcome, presence } = decide(strict, outside, valid, online("entry"))

    expect(outcome.decision).toBe("granted")
    expect(presence).toEqual({ inside: true, entries: 1 })
  })

  it("denies a second entry while inside", () => {
    const { outcome, presence } = decide(reentry, { inside: true, entries: 1 }, valid, online("entry"))

    expect(outcome).toMatchObject({ decision: "denied", reason: "already_admitted" })
    expect(presence).toEqual({ inside: true, entries: 1 })
  })

  it("allows re-entry after an exit only when the list allows it", () => {
    const left = { inside: false, entries: 1 }

    expect(decide(strict, left, valid, online("entry")).outcome.reason).toBe("already_admitted")
    expect(decide(reentry, left, valid, online("entry")).outcome.decision).toBe("granted")
  })

  it("accepts an exit of a known ticket, even a revoked one", () => {
    const { outcome, presence } = decide(strict, { inside: true, entries: 1 }, cancelled, online("exit"))

    expect(outcome.decision).toBe("granted")
    expect(presence).toEqual({ inside: false, entries: 1 })
  })

  it("gives each refusal its reason code", () => {
    const reasonOf = (resolution: Parameters<typeof decide>[2]) =>
      decide(strict, outside, resolution, online("entry")).outcome.reason

    expect(reasonOf(cancelled)).toBe("ticket_cancelled")
    expect(reasonOf(resolvedTicket({ inEvent: false, valid: true }))).toBe("not_in_event")
    expect(reasonOf(unresolved("unknown_ticket"))).toBe("unknown_ticket")
    expect(reasonOf(unresolved("no_match"))).toBe("no_match")
    expect(reasonOf(unresolved("no_ticket"))).toBe("no_ticket")
  })

  it("records an offline double use as a granted fact flagged with the reason", () => {
    const { outcome, presence } = decide(strict, { inside: true, entries: 1 }, valid, offline("entry"))

    expect(outcome).toMatchObject({ decision: "granted", reason: null, flagged: "already_admitted" })
    expect(presence).toEqual({ inside: true, entries: 2 })
  })

  it("refuses a nonce reused for another scan", () => {
    const first = record(strict, emptyLedger, valid, { ...online("entry"), nonce: "n1", fingerprint: "a" })
    const ledger = Either.getOrThrow(first).ledger

    const again = record(strict, ledger, valid, { ...online("exit"), nonce: "n1", fingerprint: "b" })

    expect(Either.isLeft(again)).toBe(true)
  })
})

interface Generated {
  readonly scans: ReadonlyArray<NoncedScan>
  /** Indexes into `scans`, in delivery order: every scan at least once, some several times. */
  readonly deliveries: ReadonlyArray<number>
  /** Deliveries from this position on see the ticket cancelled (never, when past the end). */
  readonly cancelledFrom: number
  readonly allowReentry: boolean
}

const scanArb = fc.record({
  direction: fc.constantFrom<Direction>("entry", "entry", "exit"),
  offline: fc.integer({ min: 0, max: 3 }).map((n) => n === 0)
})

const generated: fc.Arbitrary<Generated> = fc.array(scanArb, { minLength: 1, maxLength: 24 }).chain((raw) => {
  const scans = raw.map((s, i) => ({ ...s, nonce: `n${i}`, fingerprint: `${s.direction}:${s.offline}` }))
  const copies = fc.array(fc.integer({ min: 0, max: 3 }), { minLength: scans.length, maxLength: scans.length })
  return copies.chain((extra) => {
    const all = scans.flatMap((_, i) => Array.from({ length: 1 + extra[i]! }, () => i))
    return fc.record({
      scans: fc.constant(scans),
      deliveries: fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length }),
      cancelledFrom: fc.integer({ min: 0, max: all.length * 2 }),
      allowReentry: fc.boolean()
    })
  })
})

interface Delivered {
  readonly index: number
  readonly scan: NoncedScan
  readonly resolution: Resolution
  readonly outcome: Outcome
  readonly replayed: boolean
}

/** Delivers `deliveries` in order, each seeing the resolution `resolutionAt` its position. */
const deliver = (
  rules: ListRules,
  scans: ReadonlyArray<NoncedScan>,
  deliveries: ReadonlyArray<number>,
  resolutionAt: (position: number) => Resolution
) => {
  let ledger: Ledger = emptyLedger
  const delivered: Array<Delivered> = []
  deliveries.forEach((index, position) => {
    const scan = scans[index]!
    const resolution = resolutionAt(position)
    const result = Either.getOrThrow(record(rules, ledger, resolution, scan))
    ledger = result.ledger
    delivered.push({ index, scan, resolution, outcome: result.outcome, replayed: result.replayed })
  })
  const history = delivered.filter((d) => !d.replayed).map((d) => ({ direction: d.scan.direction, outcome: d.outcome }))
  return { delivered, history, ledger }
}

const run = (g: Generated) => {
  const rules = { allowReentry: g.allowReentry }
  return { rules, ...deliver(rules, g.scans, g.deliveries, (p) => p >= g.cancelledFrom ? cancelled : valid) }
}

describe("check-in list properties", () => {
  it.prop(
    "grants at most one unflagged entry between exits for any delivery schedule",
    [generated],
    ([g]) => {
      const { history, rules } = run(g)

      expect(firstViolation(rules, history)).toBe(-1)
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "answers every redelivery of a scan with its first outcome",
    [generated],
    ([g]) => {
      const { delivered } = run(g)

      const first = new Map<number, Outcome>()
      for (const { index, outcome } of delivered) {
        const seen = first.get(index)
        if (seen === undefined) first.set(index, outcome)
        else expect(outcome).toEqual(seen)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "ends in the state of applying each distinct scan once, in order of first delivery",
    [generated],
    ([g]) => {
      const { delivered, ledger, rules } = run(g)
      const firsts = delivered.filter((d) => !d.replayed)

      const once = deliver(rules, g.scans, firsts.map((d) => d.index), (p) => firsts[p]!.resolution)

      expect(ledger.presence).toEqual(once.ledger.presence)
      expect([...ledger.outcomes.entries()]).toEqual([...once.ledger.outcomes.entries()])
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "never denies an offline fact and never grants an online entry while inside",
    [generated],
    ([g]) => {
      const { delivered, rules } = run(g)

      let presence = outside
      for (const { outcome, replayed, scan } of delivered) {
        if (replayed) continue
        if (scan.offline) expect(outcome.decision).toBe("granted")
        if (!scan.offline && scan.direction === "entry" && outcome.decision === "granted") {
          expect(presence.inside).toBe(false)
          if (!rules.allowReentry) expect(presence.entries).toBe(0)
        }
        if (outcome.decision === "granted") {
          presence = scan.direction === "entry"
            ? { inside: true, entries: presence.entries + 1 }
            : { inside: false, entries: presence.entries }
        }
      }
    },
    { fastCheck: { numRuns: 300 } }
  )
})
