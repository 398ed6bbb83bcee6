import type { SqlClient } from "@effect/sql"
import type { Effect } from "effect"
import type { Client } from "./Client.js"
import type { FaultSchedule } from "./Faults.js"
import type { ServiceInstance } from "./Processes.js"
import type { Display } from "./Progress.js"
import type { Rng } from "./Random.js"
import type { Check } from "./Report.js"
import type { Stats } from "./Stats.js"

export interface RunOptions {
  readonly mode: "demo" | "chaos"
  readonly seed: string
  /** Seconds of load with faults; setup before and the drain after are not counted. */
  readonly durationSeconds: number
  /** People in the population: ticket holders, people without tickets and strangers. */
  readonly people: number
  readonly instances: number
  /** An existing PostgreSQL database; unset: embedded. */
  readonly databaseUrl: string | undefined
  readonly schedule: FaultSchedule
  readonly out: NodeJS.WritableStream & { readonly isTTY?: boolean }
  readonly quiet: boolean
  /** Keep the temporary folder (logs, embedded data) after the run. */
  readonly keep: boolean
  /** Seconds the drain may take after the load before the checks run anyway. */
  readonly drainSeconds: number
}

/** The ticketing provider simulator of a run: its API for the service, its control API for faults and sales. */
export interface Provider {
  readonly apiUrl: string
  readonly controlUrl: string
  readonly control: (method: string, path: string, body?: unknown) => Effect.Effect<any, unknown>
}

/** Which parts of the API the running service offers; scenarios use what exists. */
export interface Capabilities {
  readonly paths: ReadonlySet<string>
  readonly has: (method: string, path: string) => boolean
  /** Whether the OpenAPI document defines a component schema of this name (an item type of a batch, say). */
  readonly hasSchema: (name: string) => boolean
}

/** Everything a scenario and the fault injector share during a run. */
export interface World {
  readonly options: RunOptions
  readonly stats: Stats
  readonly display: Display
  readonly rng: Rng
  readonly instances: ReadonlyArray<ServiceInstance>
  /** Base URLs of the instances that are running now. */
  readonly targets: () => ReadonlyArray<string>
  /** A device's HTTP client with its own random stream. */
  readonly client: (device: string) => Client
  readonly adminKey: string
  readonly provider: Provider | undefined
  readonly capabilities: Capabilities
  /** The runner's own connection to the service's database, for checks and connection faults. */
  readonly sql: SqlClient.SqlClient
  /** Devices of a kind lose their network while this is set; they buffer and upload late. */
  readonly offline: { gate: boolean; kiosk: boolean }
  /** Set once the load phase is over: devices stop starting new work. */
  readonly stopping: { value: boolean }
}

/** One kind of run: what devices do, and what must hold in the database afterwards. */
export interface Scenario {
  readonly name: string
  /** Admin set-up before any fault: venues, devices, events, provider mapping. */
  readonly setup: (world: World) => Effect.Effect<void, unknown>
  /** The devices' work while faults are injected; ends when `world.stopping` is set or it runs out of work. */
  readonly load: (world: World) => Effect.Effect<void, unknown>
  /** After the load: uploads what devices still buffer and waits for background work to settle. */
  readonly drain: (world: World) => Effect.Effect<void, unknown>
  readonly checks: (world: World) => Effect.Effect<ReadonlyArray<Check>, unknown>
}
