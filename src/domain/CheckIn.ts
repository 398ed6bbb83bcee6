import { Data, Either, Schema } from "effect"

/**
 * Check-in list rules, after pretix: a ticket enters a list once; it enters again only after an
 * exit, and only when the list allows re-entry; an exit is always accepted for a known ticket.
 *
 * Two kinds of scan reach the server. An online scan asks for a decision and the server's answer
 * opens or keeps the gate shut. An offline scan already happened at a gate that could not reach
 * the server: it is recorded as a fact (granted), and when the online rules would have refused it
 * the fact is flagged with the reason instead of being rejected.
 */

export const Direction = Schema.Literal("entry", "exit")
export type Direction = typeof Direction.Type

/** Why a scan was refused, or why an offline fact is flagged. */
export const Reason = Schema.Literal(
  "no_match", // the probe matched nobody in the event's gallery
  "no_ticket", // the person was identified but holds no valid ticket for the event
  "unknown_ticket", // no synced ticket has this reference
  "not_in_event", // the ticket belongs to another event
  "ticket_cancelled", // cancelled, refunded or transferred away
  "already_admitted" // inside already, or entered before on a list without re-entry
)
export type Reason = typeof Reason.Type

export const Decision = Schema.Literal("granted", "denied")
export type Decision = typeof Decision.Type

/** What the gate is told, and what a redelivered scan is told again. */
export class Outcome extends Schema.Class<Outcome>("Outcome")({
  decision: Decision,
  /** Set when denied. */
  reason: Schema.NullOr(Reason),
  /** Set on an offline fact that the online rules would have refused: recorded, but flagged. */
  flagged: Schema.NullOr(Reason)
}) {}

/** Where a ticket stands on one check-in list. */
export interface Presence {
  readonly inside: boolean
  /** Granted entries so far, online or offline. */
  readonly entries: number
}

export const outside: Presence = { inside: false, entries: 0 }

/**
 * What the server knows about the scanned ticket before applying the list rules: either the
 * ticket, or why none could be found (`no_match`, `no_ticket`, `unknown_ticket`).
 */
export type Resolution =
  | { readonly _tag: "Ticket"; readonly inEvent: boolean; readonly valid: boolean }
  | { readonly _tag: "Unresolved"; readonly reason: Reason }

export const resolvedTicket = (ticket: { readonly inEvent: boolean; readonly valid: boolean }): Resolution => ({
  _tag: "Ticket",
  ...ticket
})

export const unresolved = (reason: Reason): Resolution => ({ _tag: "Unresolved", reason })

export interface Scan {
  readonly direction: Direction
  readonly offline: boolean
}

export interface ListRules {
  readonly allowReentry: boolean
}

/** The reason the online rules refuse `scan`, if they do. */
const refusal = (rules: ListRules, presence: Presence, resolution: Resolution, scan: Scan): Reason | null => {
  if (resolution._tag === "Unresolved") return resolution.reason
  if (!resolution.inEvent) return "not_in_event"
  // Letting a holder of a revoked ticket leave is harmless and keeps presence accurate.
  if (scan.direction === "exit") return null
  if (!resolution.valid) return "ticket_cancelled"
  if (presence.inside) return "already_admitted"
  if (presence.entries > 0 && !rules.allowReentry) return "already_admitted"
  return null
}

const moved = (presence: Presence, direction: Direction): Presence =>
  direction === "entry"
    ? { inside: true, entries: presence.entries + 1 }
    : { inside: false, entries: presence.entries }

/**
 * Decides one scan of one ticket on one list. Returns the outcome and the ticket's presence after
 * it; an unresolved scan leaves presence as it was (there is no ticket to move).
 */
export const decide = (
  rules: ListRules,
  presence: Presence,
  resolution: Resolution,
  scan: Scan
): { readonly outcome: Outcome; readonly presence: Presence } => {
  const reason = refusal(rules, presence, resolution, scan)
  const next = resolution._tag === "Ticket" ? moved(presence, scan.direction) : presence

  if (scan.offline) {
    return { outcome: new Outcome({ decision: "granted", reason: null, flagged: reason }), presence: next }
  }
  if (reason !== null) return { outcome: new Outcome({ decision: "denied", reason, flagged: null }), presence }
  return { outcome: new Outcome({ decision: "granted", reason: null, flagged: null }), presence: next }
}

/**
 * Which of a person's tickets a scan applies to: the first one the rules let through (for an
 * exit, preferably one that is inside), else the first valid ticket of the event, else the first.
 * Candidates come in a stable order; -1 when there are none.
 */
export const pickTicket = (
  rules: ListRules,
  candidates: ReadonlyArray<{ readonly presence: Presence; readonly resolution: Resolution }>,
  scan: Scan
): number => {
  const passes = (c: (typeof candidates)[number]) => refusal(rules, c.presence, c.resolution, scan) === null
  const firstWhere = (p: (c: (typeof candidates)[number]) => boolean) => candidates.findIndex(p)
  const order = [
    ...(scan.direction === "exit" ? [firstWhere((c) => c.presence.inside && passes(c))] : []),
    firstWhere(passes),
    firstWhere((c) => c.resolution._tag === "Ticket" && c.resolution.inEvent && c.resolution.valid),
    candidates.length > 0 ? 0 : -1
  ]
  return order.find((i) => i !== -1) ?? -1
}

/** A device reused a scan nonce for a different scan: neither outcome may be given for the other. */
export class NonceReused extends Data.TaggedError("NonceReused")<{ readonly nonce: string }> {}

/** A scan as the ledger sees it: its nonce and a fingerprint of everything else it says. */
export interface NoncedScan extends Scan {
  readonly nonce: string
  readonly fingerprint: string
}

/**
 * The check-in history of one ticket on one list, as a pure model of what the database keeps:
 * the ticket's presence and the first outcome of every nonce.
 */
export interface Ledger {
  readonly presence: Presence
  readonly outcomes: ReadonlyMap<string, { readonly fingerprint: string; readonly outcome: Outcome }>
}

export const emptyLedger: Ledger = { presence: outside, outcomes: new Map() }

/**
 * Applies one delivery of a scan. A nonce seen before returns its first outcome and changes
 * nothing; the same nonce carrying another scan is `NonceReused`.
 */
export const record = (
  rules: ListRules,
  ledger: Ledger,
  resolution: Resolution,
  scan: NoncedScan
): Either.Either<{ readonly outcome: Outcome; readonly ledger: Ledger; readonly replayed: boolean }, NonceReused> => {
  const seen = ledger.outcomes.get(scan.nonce)
  if (seen !== undefined) {
    return seen.fingerprint === scan.fingerprint
      ? Either.right({ outcome: seen.outcome, ledger, replayed: true })
      : Either.left(new NonceReused({ nonce: scan.nonce }))
  }
  const { outcome, presence } = decide(rules, ledger.presence, resolution, scan)
  const outcomes = new Map(ledger.outcomes).set(scan.nonce, { fingerprint: scan.fingerprint, outcome })
  return Either.right({ outcome, ledger: { presence, outcomes }, replayed: false })
}

/**
 * The list invariant over a history of recorded scans in the order they were decided: between two
 * exits at most one entry is granted unflagged, and without re-entry at most one overall; every
 * other granted entry (an offline fact of a double use) carries a flag. Returns the index of the
 * first scan that breaks it, or -1.
 */
export const firstViolation = (
  rules: ListRules,
  history: ReadonlyArray<{ readonly direction: Direction; readonly outcome: Outcome }>
): number => {
  let inside = false
  let entered = false
  for (let i = 0; i < history.length; i++) {
    const { direction, outcome } = history[i]!
    if (outcome.decision !== "granted") continue
    if (direction === "exit") {
      inside = false
      continue
    }
    const doubleUse = inside || (entered && !rules.allowReentry)
    if (doubleUse && outcome.flagged === null) return i
    inside = true
    entered = true
  }
  return -1
}
