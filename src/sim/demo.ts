import { main } from "./Command.js"

/**
 * `npm run demo`: the service, the provider simulator and a fleet of simulated devices over real
 * HTTP, with faults on a schedule; ends with a report checked against the database.
 */
main("demo")
