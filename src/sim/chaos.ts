import { main } from "./Command.js"

/**
 * `npm run chaos`: the same invariants with only load and faults: several service instances on
 * one database, killed at random and restarted.
 */
main("chaos")
