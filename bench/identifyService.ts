import { type IdentifyBenchRow, identifySection } from "./identify.js"
import { adminKey } from "./support/api.js"
import type { BenchContext } from "./support/context.js"
import { createDatabase } from "./support/database.js"
import type { Section } from "./support/report.js"
import { forkChild, freePort, tempDataDir } from "./support/service.js"
import { fmt, mib } from "./support/stats.js"

/**
 * The identify bench (bench/identify.ts) run inside the bench service process, one size at a time,
 * so the peak resident memory of a service holding each gallery can be reported beside the timings.
 */
export const identifyInServiceScenario = async (context: BenchContext): Promise<Section> => {
  const sizes = context.quick ? [1_000, 10_000] : [10_000, 100_000]
  const database = await createDatabase(context.server, "identify")
  const service = await forkChild("server.ts", {
    DATABASE_URL: database.url,
    PORT: String(await freePort()),
    HOST: "127.0.0.1",
    DATA_DIR: tempDataDir(),
    LOG_LEVEL: "warn",
    ADMIN_KEY: adminKey
  })
  const rows: Array<IdentifyBenchRow> = []
  const peaks: Array<number> = []
  try {
    for (const size of sizes) {
      service.memory.start()
      const [row] = await service.call<Array<IdentifyBenchRow>>("identify", {
        sizes: [size],
        rounds: context.rounds,
        ...(context.quick ? { probes: 5 } : {})
      })
      const peak = service.memory.stop()
      context.log(
        `identify ${size}: gatehouse ${fmt(row!.gatehouseMs.median)} ms, plain ${
          fmt(row!.baselineMs.median)
        } ms, peak RSS ${fmt(mib(peak))} MiB`
      )
      rows.push(row!)
      peaks.push(peak)
    }
  } finally {
    await service.stop()
    await database.drop()
  }
  const section = identifySection(rows)
  const [first, ...others] = section.tables
  return {
    ...section,
    intro:
      `${section.intro} Run inside the bench service process; peak RSS is that process's resident memory while it built and searched the gallery (vectors are 4 bytes × 512 per template).`,
    tables: [
      {
        ...first!,
        head: [...first!.head, "Peak RSS (MiB)"],
        rows: first!.rows.map((r, i) => [...r, fmt(mib(peaks[i]!), 0)])
      },
      ...others
    ]
  }
}
