import { seconds } from "./Progress.js"
import type { Snapshot } from "./Stats.js"

/** The verdict on one invariant, checked against the database at the end of a run. */
export interface Check {
  readonly name: string
  readonly status: "pass" | "fail" | "skip"
  /** What was compared, with the numbers. */
  readonly detail: string
  /** The ids involved when it fails (at most a few are printed). */
  readonly ids: ReadonlyArray<string>
}

export const pass = (name: string, detail: string): Check => ({ name, status: "pass", detail, ids: [] })
export const fail = (name: string, detail: string, ids: ReadonlyArray<string | number> = []): Check => ({
  name,
  status: "fail",
  detail,
  ids: ids.map(String)
})
/** An invariant that could not be checked in this run (a capability missing); never silent. */
export const skip = (name: string, detail: string): Check => ({ name, status: "skip", detail, ids: [] })

/** Passes when `offending` is empty, otherwise fails with those ids. */
export const expectNone = (
  name: string,
  offending: ReadonlyArray<string | number>,
  passDetail: string,
  failDetail: (count: number) => string
): Check => offending.length === 0 ? pass(name, passDetail) : fail(name, failDetail(offending.length), offending)

/** Keys that occur more than once. */
export const duplicates = <A>(rows: ReadonlyArray<A>, key: (row: A) => string): Array<string> => {
  const counts = new Map<string, number>()
  for (const row of rows) counts.set(key(row), (counts.get(key(row)) ?? 0) + 1)
  return [...counts].filter(([, n]) => n > 1).map(([k]) => k)
}

export interface Passage {
  readonly ticket: string
  readonly direction: "entry" | "exit"
  /** Order of the passages of one ticket as the service recorded them. */
  readonly order: number
}

/**
 * Tickets with two granted entries without a granted exit between them: the check-in list's
 * promise is broken for each one returned.
 */
export const admittedTwice = (granted: ReadonlyArray<Passage>): Array<string> => {
  const byTicket = new Map<string, Array<Passage>>()
  for (const passage of granted) {
    const list = byTicket.get(passage.ticket) ?? []
    list.push(passage)
    byTicket.set(passage.ticket, list)
  }
  const broken: Array<string> = []
  for (const [ticket, passages] of byTicket) {
    let inside = false
    for (const passage of [...passages].sort((a, b) => a.order - b.order)) {
      if (passage.direction === "entry") {
        if (inside) {
          broken.push(ticket)
          break
        }
        inside = true
      } else {
        inside = false
      }
    }
  }
  return broken
}

/** A rate with the counts it comes from, checked against a bound. */
export const rateCheck = (
  name: string,
  what: string,
  count: number,
  total: number,
  bound: { readonly atLeast?: number; readonly atMost?: number },
  ids: ReadonlyArray<string> = []
): Check => {
  if (total === 0) return skip(name, `no ${what} in this run`)
  const rate = count / total
  const percent = (x: number) => `${(x * 100).toFixed(1)}%`
  const expected = bound.atLeast !== undefined
    ? `expected at least ${percent(bound.atLeast)}`
    : `expected at most ${percent(bound.atMost ?? 1)}`
  const ok = (bound.atLeast === undefined || rate >= bound.atLeast) &&
    (bound.atMost === undefined || rate <= bound.atMost)
  const detail = `${count}/${total} ${what} (${percent(rate)}; ${expected})`
  return ok ? pass(name, detail) : fail(name, detail, ids)
}

export interface RunSummary {
  readonly title: string
  readonly seed: string
  readonly durationMs: number
  readonly database: string
  readonly instances: number
  readonly stats: Snapshot
  readonly notes: ReadonlyArray<{ readonly atMs: number; readonly text: string }>
  readonly checks: ReadonlyArray<Check>
}

export const failed = (checks: ReadonlyArray<Check>) => checks.filter((c) => c.status === "fail")

/** The final report as printed: faults survived, what happened, and each invariant's verdict. */
export const renderReport = (summary: RunSummary): string => {
  const s = summary.stats
  const faults = summary.notes.filter((n) => n.text.startsWith("fault:"))
  const lines = [
    "",
    `=== ${summary.title} ===`,
    `seed ${summary.seed} · ${
      seconds(summary.durationMs)
    } · ${summary.database} · ${summary.instances} service instance${summary.instances === 1 ? "" : "s"}`,
    "",
    `Faults injected (${faults.length}):`,
    ...(faults.length === 0 ? ["  none"] : faults.map((f) => `  ${seconds(f.atMs).padStart(7)}  ${f.text.slice(7)}`)),
    "",
    "What the devices did:",
    `  enrollment  ${s.enrolled} people enrolled of ${s.peoplePlanned} planned, ${s.enrollRejected} refused, ${s.erased} erased`,
    `  tickets     ${s.ticketsSold} sold in the provider, ${s.ticketsSynced} synced, ${s.checkinsWrittenBack} gate check-ins written back to it`,
    `  gates       ${s.scans} scans, ${s.admitted} admitted, ${s.denied} denied, ${s.strangersDenied} of ${s.strangerScans} stranger scans denied; ${s.offlineUploaded} offline scans uploaded late, ${s.offlineFlagged} flagged as double use or unknown`,
    `  network     ${s.requests} requests, ${s.retries} retries, ${s.replays} replayed answers, ${s.duplicatesSent} duplicate sends, ${s.responsesDropped} lost responses, ${s.timeouts} timeouts, ${s.batchesResent} batches resent`,
    `  service     ${s.kills} SIGKILLs, ${s.restarts} restarts, ${s.dbTerminations} connection terminations, ${s.serverErrors} 5xx answers, ${s.gaveUp} requests given up`,
    "",
    "Invariants (checked against the database):"
  ]
  for (const check of summary.checks) {
    const mark = check.status === "pass" ? "PASS" : check.status === "fail" ? "FAIL" : "SKIP"
    lines.push(`  ${mark}  ${check.name}: ${check.detail}`)
    if (check.status === "fail" && check.ids.length > 0) {
      const shown = check.ids.slice(0, 10).join(", ")
      lines.push(`        ids: ${shown}${check.ids.length > 10 ? ` and ${check.ids.length - 10} more` : ""}`)
    }
  }
  const bad = failed(summary.checks)
  const skipped = summary.checks.filter((c) => c.status === "skip").length
  lines.push("")
  lines.push(
    bad.length === 0
      ? `RESULT: PASS (${summary.checks.length - skipped} invariants held${skipped > 0 ? `, ${skipped} skipped` : ""})`
      : `RESULT: FAIL (${bad.map((c) => c.name).join("; ")})`
  )
  return lines.join("\n") + "\n"
}
