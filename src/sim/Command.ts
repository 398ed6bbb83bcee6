import { NodeRuntime } from "@effect/platform-node"
import { Effect, Logger, LogLevel } from "effect"
import { helpText, parseOptions, UsageError } from "./Cli.js"
import { fleetScenario } from "./Fleet.js"
import { exitCode, run } from "./Run.js"

/**
 * Entry of `npm run demo` and `npm run chaos`: parses the options, runs the fleet scenario and
 * exits 0 when every invariant held, 1 when one failed, 2 when the run itself could not complete.
 */
export const main = (mode: "demo" | "chaos") => {
  let options
  try {
    options = parseOptions(mode, process.argv.slice(2), process.env, process.stdout)
  } catch (error) {
    process.stderr.write(`${error instanceof UsageError || error instanceof TypeError ? error.message : error}\n\n`)
    process.stderr.write(helpText(mode) + "\n")
    process.exit(2)
  }
  if (options === "help") {
    process.stdout.write(helpText(mode) + "\n")
    process.exit(0)
  }
  const title = mode === "demo" ? "Gatehouse demo report" : "Gatehouse chaos report"
  run(fleetScenario, options, title).pipe(
    Effect.map(exitCode),
    Effect.catchAllCause((cause) =>
      Effect.sync(() => {
        process.stderr.write(`\nthe run could not complete:\n${cause.toString()}\n`)
        return 2
      })
    ),
    Effect.flatMap((code) => Effect.sync(() => process.exit(code))),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    NodeRuntime.runMain({ disablePrettyLogger: true })
  )
}
