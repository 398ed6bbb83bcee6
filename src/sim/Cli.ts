import { Either } from "effect"
import * as Fs from "node:fs"
import * as Util from "node:util"
import { chaosSchedule, defaultSchedule, type FaultSchedule, parseSchedule } from "./Faults.js"
import type { RunOptions } from "./World.js"

export class UsageError extends Error {}

const usage = (mode: "demo" | "chaos") =>
  `Usage: npm run ${mode} -- [options]

  --duration <s>        seconds of load with faults (default ${mode === "demo" ? 60 : 60})
  --people <n>          people in the population (default ${mode === "demo" ? 120 : 200})
  --instances <n>       service instances on one database (default ${mode === "demo" ? 1 : 3})
  --seed <text>         seed of the population, the embeddings and the faults (default random)
  --faults <file.json>  fault schedule (see README); default: the built-in ${mode} schedule
  --no-faults           run without faults
  --duplicate-rate <p>  share of requests sent twice at once
  --drop-rate <p>       share of responses lost after the server acted
  --timeout-rate <p>    share of attempts abandoned after a few milliseconds
  --kill-every <s>      also SIGKILL an instance about every <s> seconds
  --drain <s>           seconds allowed to finish after the load (default 120)
  --keep                keep the temporary folder with the service logs
  --quiet               print only the final report

DATABASE_URL runs against an existing PostgreSQL; unset, an embedded one in a temporary folder.
Exits 0 when every invariant held, 1 when one failed (the report names it and the ids involved).`

const number = (value: string | undefined, name: string, fallback: number, min = 0) => {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < min) throw new UsageError(`--${name} must be a number >= ${min}`)
  return n
}

/** Options of `npm run demo` or `npm run chaos` from the command line and the environment. */
export const parseOptions = (
  mode: "demo" | "chaos",
  argv: ReadonlyArray<string>,
  env: Record<string, string | undefined>,
  out: RunOptions["out"]
): RunOptions | "help" => {
  const { values } = Util.parseArgs({
    args: [...argv],
    options: {
      duration: { type: "string" },
      people: { type: "string" },
      instances: { type: "string" },
      seed: { type: "string" },
      faults: { type: "string" },
      "no-faults": { type: "boolean" },
      "duplicate-rate": { type: "string" },
      "drop-rate": { type: "string" },
      "timeout-rate": { type: "string" },
      "kill-every": { type: "string" },
      drain: { type: "string" },
      keep: { type: "boolean" },
      quiet: { type: "boolean" },
      help: { type: "boolean", short: "h" }
    },
    strict: true
  })
  if (values.help === true) return "help"

  let schedule: FaultSchedule = mode === "demo" ? defaultSchedule() : chaosSchedule()
  if (values.faults !== undefined) {
    const parsed = parseSchedule(Fs.readFileSync(values.faults, "utf8"))
    if (Either.isLeft(parsed)) throw new UsageError(parsed.left)
    schedule = parsed.right
  }
  if (values["no-faults"] === true) {
    schedule = { rates: { duplicate: 0, dropResponse: 0, timeout: 0, resendBatch: 0 }, events: [], repeat: [] }
  }
  const rate = (name: string, current: number) => Math.min(1, number(values[name as "drop-rate"], name, current))
  schedule = {
    ...schedule,
    rates: {
      ...schedule.rates,
      duplicate: rate("duplicate-rate", schedule.rates.duplicate),
      dropResponse: rate("drop-rate", schedule.rates.dropResponse),
      timeout: rate("timeout-rate", schedule.rates.timeout)
    },
    repeat: values["kill-every"] === undefined ? schedule.repeat : [
      ...schedule.repeat,
      {
        every: number(values["kill-every"], "kill-every", 10, 1),
        jitter: 0.3,
        fault: { kind: "kill-service", restartAfter: 1 }
      }
    ]
  }

  return {
    mode,
    seed: values.seed ?? String(Math.floor(Math.random() * 1e9)),
    durationSeconds: number(values.duration, "duration", 60, 5),
    people: Math.floor(number(values.people, "people", mode === "demo" ? 120 : 200, 4)),
    instances: Math.floor(number(values.instances, "instances", mode === "demo" ? 1 : 3, 1)),
    databaseUrl: env.DATABASE_URL === undefined || env.DATABASE_URL === "" ? undefined : env.DATABASE_URL,
    schedule,
    out,
    quiet: values.quiet === true,
    keep: values.keep === true,
    drainSeconds: number(values.drain, "drain", 120, 5)
  }
}

export const helpText = usage
