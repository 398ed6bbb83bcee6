import { Option, Redacted } from "effect"
import type { TicketProviderSettings } from "../../src/services/TicketProvider.js"
import type { ProviderSimulator } from "../../src/sim/ProviderSim.js"

export const simToken = "sim-token"

/** Client settings aimed at a running simulator; retries and the breaker off unless a test turns them on. */
export const providerSettings = (
  sim: ProviderSimulator,
  overrides: Partial<TicketProviderSettings> = {}
): TicketProviderSettings => ({
  baseUrl: new URL(sim.baseUrl),
  token: Option.some(Redacted.make(simToken)),
  timeoutMs: 600_000,
  retries: 0,
  retryBaseMs: 100,
  retryAfterMaxMs: 10_000,
  concurrency: 4,
  pageSize: 10,
  breaker: { failureThreshold: 100, openMs: 1000, halfOpenProbes: 2 },
  ...overrides
})
