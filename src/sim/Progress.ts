import type { Snapshot, Stats } from "./Stats.js"

/** Seconds with one decimal, as the display and the report show times. */
export const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`

/** The status lines of the live display for one snapshot. */
export const renderStatus = (
  s: Snapshot,
  elapsedMs: number,
  load: { readonly elapsedMs: number | undefined; readonly totalMs: number | undefined },
  phase: string
): Array<string> => {
  const loadClock = load.elapsedMs === undefined
    ? ""
    : ` · load ${seconds(Math.min(load.elapsedMs, load.totalMs ?? Infinity))}${
      load.totalMs === undefined ? "" : `/${seconds(load.totalMs)}`
    }`
  return [
    `[${seconds(elapsedMs)}${loadClock}] ${phase}`,
    `  people   ${s.enrolled}/${s.peoplePlanned} enrolled, ${s.erased} erased · tickets ${s.ticketsSold} sold, ${s.ticketsSynced} synced, ${s.checkinsWrittenBack} check-ins written back`,
    `  gates    ${s.scans} scans: ${s.admitted} admitted, ${s.denied} denied (${s.strangersDenied}/${s.strangerScans} strangers denied) · offline ${s.offlineBuffered} buffered, ${s.offlineUploaded} uploaded late, ${s.offlineFlagged} flagged`,
    `  network  ${s.requests} requests, ${s.retries} retries, ${s.replays} replayed answers · ${s.duplicatesSent} sent twice, ${s.responsesDropped} responses lost, ${s.timeouts} timeouts, ${s.connectionErrors} refused, ${s.inProgress} in progress, ${s.serverErrors} 5xx`,
    `  faults   ${s.faults} injected: ${s.kills} SIGKILL (${s.restarts} restarts), ${s.dbTerminations} db terminations, ${s.providerOutages} provider outages, ${s.deviceOutages} devices offline`
  ]
}

export interface DisplayOptions {
  readonly out: NodeJS.WritableStream & { readonly isTTY?: boolean }
  /** Milliseconds between status lines when the output is not a terminal. */
  readonly plainIntervalMs: number
  readonly totalMs?: number | undefined
  readonly quiet?: boolean
}

/**
 * The live progress of a run. On a terminal the status block is redrawn in place a few times a
 * second with notable events scrolling above it; elsewhere (CI logs, pipes) it prints plain status
 * lines every `plainIntervalMs` and each event on its own line.
 */
export class Display {
  private timer: NodeJS.Timeout | undefined
  private drawn = 0
  private phase = "starting"
  private lastPlain = 0

  constructor(private readonly stats: Stats, private readonly options: DisplayOptions) {}

  private get tty(): boolean {
    return this.options.out.isTTY === true
  }

  setPhase(phase: string): void {
    this.phase = phase
    this.event(phase)
  }

  /** A notable moment: kept in the stats for the report and shown above the status. */
  event(text: string): void {
    const entry = this.stats.note(text)
    if (this.options.quiet === true) return
    this.clear()
    this.options.out.write(`  ${seconds(entry.atMs).padStart(6)}  ${text}\n`)
    if (this.tty) this.draw()
  }

  start(): void {
    if (this.options.quiet === true) return
    const interval = this.tty ? 250 : 500
    this.timer = setInterval(() => this.tick(), interval)
    this.timer.unref()
  }

  /** Stops the updates and prints the last status once; later calls do nothing. */
  stop(): void {
    if (this.timer === undefined) return
    clearInterval(this.timer)
    this.timer = undefined
    this.clear()
    this.writeStatus()
  }

  private tick(): void {
    if (this.tty) {
      this.clear()
      this.draw()
    } else if (this.stats.elapsedMs() - this.lastPlain >= this.options.plainIntervalMs) {
      this.lastPlain = this.stats.elapsedMs()
      this.writeStatus()
    }
  }

  private lines(): Array<string> {
    return renderStatus(
      this.stats.snapshot(),
      this.stats.elapsedMs(),
      { elapsedMs: this.stats.loadElapsedMs(), totalMs: this.options.totalMs },
      this.phase
    )
  }

  private writeStatus(): void {
    this.options.out.write(this.lines().join("\n") + "\n")
  }

  private draw(): void {
    const lines = this.lines()
    this.options.out.write(lines.join("\n") + "\n")
    this.drawn = lines.length
  }

  private clear(): void {
    if (!this.tty || this.drawn === 0) return
    this.options.out.write(`\x1b[${this.drawn}A\x1b[0J`)
    this.drawn = 0
  }
}
