import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { AppLive, ShutdownGuardLive } from "./layers/App.js"
import { helpText } from "./layers/Config.js"

if (process.argv.includes("--help") || process.argv.includes("-h")) {
  process.stdout.write(helpText() + "\n")
  process.exit(0)
}

Layer.launch(Layer.provideMerge(ShutdownGuardLive, AppLive)).pipe(NodeRuntime.runMain({ disablePrettyLogger: true }))
