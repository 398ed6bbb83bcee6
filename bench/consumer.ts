import { benchTables } from "./baseline.js"
import { adminKey } from "./support/api.js"
import type { BenchContext } from "./support/context.js"
import { createDatabase, exec } from "./support/database.js"
import type { Section } from "./support/report.js"
import { forkChild, freePort, tempDataDir } from "./support/service.js"
import { fmt, fmtRatio, fmtSummary, mib, pairedRatio } from "./support/stats.js"
import { Measures } from "./support/variants.js"

interface Variant {
  readonly name: string
  readonly label: string
  readonly command: string
  readonly args: Record<string, unknown>
}

const baselineName = "pg-per-tx"

const variants: ReadonlyArray<Variant> = [
  {
    name: "gatehouse",
    label: "Gatehouse consumer: inbox batch, group commit",
    command: "consume",
    args: {}
  },
  {
    name: baselineName,
    label: "node-postgres, one transaction per message",
    command: "baseline",
    args: { batch: 1 }
  },
  {
    name: "pg-batched",
    label: "node-postgres, 100 messages per transaction",
    command: "baseline",
    args: { batch: 100 }
  }
]

/**
 * Consumer throughput: messages per second through the queue consumer, whose handler writes one
 * domain row and appends one outbox event exactly-once through the inbox, beside node-postgres doing
 * the same writes by hand.
 */
export const consumerScenario = async (context: BenchContext): Promise<Section> => {
  const levels = [1, 8, 16]
  // Each variant's rounds are sized from a short calibration run to last about `roundSeconds`, so a
  // slow variant does not take minutes and a fast one is not over before it is measured.
  const roundSeconds = context.quick ? 0.5 : 3
  const calibration = context.quick ? 100 : 300
  const sizes = new Map<string, number>()
  const database = await createDatabase(context.server, "consumer")
  const service = await forkChild("server.ts", {
    DATABASE_URL: database.url,
    PORT: String(await freePort()),
    HOST: "127.0.0.1",
    DATA_DIR: tempDataDir(),
    LOG_LEVEL: "warn",
    ADMIN_KEY: adminKey,
    DB_POOL_SIZE: "24",
    // The bench drives the workers itself at each concurrency; the process's own claimers stay off.
    QUEUE_CONCURRENCY: "0"
  })
  const measures = new Measures()
  try {
    await exec(database.url, benchTables)
    const runOnce = (variant: Variant, run: string, messages: number, concurrency: number) =>
      service.call<{ elapsedMs: number }>(variant.command, {
        ...variant.args,
        url: database.url,
        run,
        messages,
        concurrency
      })
    for (const concurrency of levels) {
      for (const variant of variants) {
        // Enough messages that every claimer gets several batches (the product's batch is 32 by default).
        const floor = Math.max(calibration, concurrency * 32 * 3)
        const { elapsedMs } = await runOnce(variant, `${variant.name}-c${concurrency}-warm`, floor, concurrency)
        const rate = floor / (elapsedMs / 1000)
        const messages = Math.max(floor, Math.min(50_000, Math.round((rate * roundSeconds) / 100) * 100))
        sizes.set(`${variant.name}/${concurrency}`, messages)
      }
      for (let round = 0; round < context.rounds; round++) {
        for (const variant of variants) {
          const run = `${variant.name}-c${concurrency}-r${round}`
          const messages = sizes.get(`${variant.name}/${concurrency}`)!
          service.memory.start()
          const { elapsedMs } = await runOnce(variant, run, messages, concurrency)
          const rss = service.memory.stop()
          const rate = messages / (elapsedMs / 1000)
          measures.add(String(concurrency), variant.name, "rate", rate)
          measures.add(String(concurrency), variant.name, "rss", rss)
          context.log(`consumer ${run}: ${fmt(rate)} msg/s, peak RSS ${fmt(mib(rss))} MiB`)
        }
      }
    }
  } finally {
    await service.stop()
    await database.drop()
  }

  const rows = levels.flatMap((concurrency) =>
    variants.map((variant) => {
      const level = String(concurrency)
      return [
        String(concurrency),
        variant.label,
        fmtSummary(measures.summary(level, variant.name, "rate"), 0),
        variant.name === baselineName
          ? "1 (baseline)"
          : fmtRatio(pairedRatio(measures.get(level, variant.name, "rate"), measures.get(level, baselineName, "rate"))),
        fmt(mib(measures.max(level, variant.name, "rss")), 0)
      ]
    })
  )
  return {
    title: "Consumer throughput",
    intro: [
      "Messages per second from a queue through a consumer whose handler writes one domain row and appends",
      "one outbox event, exactly-once through the inbox, at 1, 8 and 16 concurrent handlers. The baselines write",
      "the same three rows per message (processed-message record, domain row, outbox event) with node-postgres",
      "and no queue: one transaction per message on `concurrency` connections, and 100 messages per transaction.",
      `Each variant's rounds were sized from a calibration run of ${calibration} messages to last about`,
      `${roundSeconds} s (messages per round, variant/concurrency: ${
        [...sizes].map(([k, v]) => `${k} ${fmt(v, 0)}`).join(", ")
      }).`,
      "Peak RSS is the service process's resident memory during the variant's rounds."
    ].join(" "),
    tables: [{
      head: ["Concurrency", "Variant", "Messages/s", "Ratio to one tx per message", "Peak RSS (MiB)"],
      rows
    }]
  }
}
