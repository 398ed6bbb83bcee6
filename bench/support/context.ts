import type { BenchServer } from "./database.js"

/** What every scenario gets from the runner. */
export interface BenchContext {
  readonly server: BenchServer
  /** Tiny sizes: checks that the harness works, measures nothing worth keeping. */
  readonly quick: boolean
  readonly rounds: number
  readonly log: (message: string) => void
}
