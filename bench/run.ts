/**
 * `npm run bench`: runs every scenario against a service it starts itself, on databases it creates
 * itself, and writes BENCHMARKS.md. Never part of `npm test`.
 *
 *   npm run bench                        full sizes, writes BENCHMARKS.md
 *   npm run bench -- --quick             tiny sizes, writes .bench/BENCHMARKS.quick.md
 *   npm run bench -- --only=http,consumer --rounds=3 --out=somewhere.md
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { consumerScenario } from "./consumer.js"
import { httpScenario } from "./http.js"
import { identifyInServiceScenario } from "./identifyService.js"
import type { BenchContext } from "./support/context.js"
import { openServer, serverSettings } from "./support/database.js"
import { document, type Section } from "./support/report.js"

const scenarios: Record<string, (context: BenchContext) => Promise<Section>> = {
  consumer: consumerScenario,
  http: httpScenario,
  identify: identifyInServiceScenario
}

const option = (name: string): string | undefined => {
  const prefix = `--${name}=`
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length)
}

/**
 * The hand-written part of an earlier page: everything from the analysis marker on (what limits a
 * figure, measured separately) survives a new run, with the marker's note that it may be older.
 */
const analysisMarker = "<!-- analysis: written by hand, kept by npm run bench -->"
const analysisOf = (out: string): string => {
  const previous = Fs.existsSync(out) ? Fs.readFileSync(out, "utf8") : ""
  const at = previous.indexOf(analysisMarker)
  return at === -1 ? "" : `\n${previous.slice(at)}`
}

const main = async () => {
  const quick = process.argv.includes("--quick")
  const rounds = Number(option("rounds") ?? (quick ? 2 : 5))
  const only = option("only")?.split(",") ?? Object.keys(scenarios)
  const out = option("out") ?? (quick ? ".bench/BENCHMARKS.quick.md" : "BENCHMARKS.md")
  const unknown = only.filter((name) => scenarios[name] === undefined)
  if (unknown.length > 0) throw new Error(`unknown scenarios ${unknown.join(", ")}`)

  const startedAt = new Date()
  const loadBefore = Os.loadavg()
  const log = (message: string) =>
    process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
  log(
    `load average ${loadBefore.map((x) => x.toFixed(2)).join(" ")}; ${rounds} rounds; ${quick ? "quick" : "full"} sizes`
  )

  const server = await openServer()
  try {
    const settings = await serverSettings(server.adminUrl)
    log(`PostgreSQL ${settings.version} (${server.kind})`)
    const sections: Array<Section> = []
    for (const name of only) {
      log(`scenario ${name}`)
      sections.push(await scenarios[name]!({ server, quick, rounds, log }))
    }
    const text = document(
      {
        startedAt,
        finishedAt: new Date(),
        rounds,
        quick,
        database: server.kind,
        settings,
        loadBefore,
        loadAfter: Os.loadavg()
      },
      sections
    )
    Fs.mkdirSync(Path.dirname(Path.resolve(out)), { recursive: true })
    Fs.writeFileSync(out, text + analysisOf(out))
    log(`wrote ${out}`)
  } finally {
    await server.close()
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : error}\n`)
    process.exit(1)
  }
)
