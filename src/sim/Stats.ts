/**
 * Counters of a simulation run, shared by every simulated device and fault. Fibers of one process
 * never run at once, so plain mutation is safe; the display reads a snapshot.
 */
export const counterNames = [
  "peoplePlanned",
  "enrolled",
  "enrollRejected",
  "erased",
  "ticketsSold",
  "ticketsSynced",
  "scans",
  "admitted",
  "denied",
  "strangerScans",
  "strangersDenied",
  "offlineBuffered",
  "offlineUploaded",
  "offlineFlagged",
  "checkinsWrittenBack",
  "batches",
  "batchesResent",
  "requests",
  "retries",
  "replays",
  "duplicatesSent",
  "responsesDropped",
  "timeouts",
  "connectionErrors",
  "inProgress",
  "serverErrors",
  "gaveUp",
  "faults",
  "kills",
  "restarts",
  "dbTerminations",
  "providerOutages",
  "deviceOutages"
] as const

export type CounterName = typeof counterNames[number]

export type Snapshot = Readonly<Record<CounterName, number>>

export class Stats {
  private readonly counters: Record<CounterName, number>
  private readonly started = Date.now()
  private loadStarted: number | undefined
  private readonly log: Array<{ readonly atMs: number; readonly text: string }> = []

  constructor() {
    this.counters = Object.fromEntries(counterNames.map((name) => [name, 0])) as Record<CounterName, number>
  }

  inc(name: CounterName, by = 1): void {
    this.counters[name] += by
  }

  set(name: CounterName, value: number): void {
    this.counters[name] = value
  }

  get(name: CounterName): number {
    return this.counters[name]
  }

  snapshot(): Snapshot {
    return { ...this.counters }
  }

  elapsedMs(): number {
    return Date.now() - this.started
  }

  startLoad(): void {
    this.loadStarted = Date.now()
  }

  /** Milliseconds since the load began, if it has. */
  loadElapsedMs(): number | undefined {
    return this.loadStarted === undefined ? undefined : Date.now() - this.loadStarted
  }

  /** A notable moment (a fault injected, a phase begun), kept for the report. */
  note(text: string): { readonly atMs: number; readonly text: string } {
    const entry = { atMs: this.elapsedMs(), text }
    this.log.push(entry)
    return entry
  }

  notes(): ReadonlyArray<{ readonly atMs: number; readonly text: string }> {
    return this.log
  }
}
