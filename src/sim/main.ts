import { ProviderSimulator } from "./ProviderSim.js"

/**
 * `npm run provider-sim`: the ticketing provider simulator as a process, for the demo and manual
 * runs. Settings come from SIM_* environment variables; the two URLs are printed as one JSON line.
 */
const env = (name: string, fallback: number) => {
  const value = process.env[name]
  return value === undefined || value === "" ? fallback : Number(value)
}

const sim = new ProviderSimulator({
  host: process.env.SIM_HOST ?? "127.0.0.1",
  port: env("SIM_PORT", 8090),
  controlPort: env("SIM_CONTROL_PORT", 8091),
  organizer: process.env.SIM_ORGANIZER ?? "demo",
  ...(process.env.SIM_TOKEN ? { token: process.env.SIM_TOKEN } : {}),
  seed: env("SIM_SEED", 42),
  events: env("SIM_EVENTS", 2),
  ticketsPerEvent: env("SIM_TICKETS", 20),
  defaultPageSize: env("SIM_PAGE_SIZE", 50)
})

await sim.start()
process.stdout.write(
  JSON.stringify({ message: "provider simulator listening", api: sim.baseUrl, control: sim.controlUrl }) + "\n"
)

const stop = () => {
  void sim.stop().then(() => process.exit(0))
}
process.once("SIGINT", stop)
process.once("SIGTERM", stop)
