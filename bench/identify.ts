/**
 * Identification speed: one probe against an event gallery of 10,000 and 100,000 templates of
 * 512 dimensions, searched by the gallery the service uses (exact top-k with a threshold over one
 * contiguous Float32Array, WebAssembly SIMD kernel), beside a plain dot-product loop over the same
 * data in the same run.
 *
 *   npx tsx bench/identify.ts [--quick] [--rounds=5]
 *
 * Runs in this process: no database, no HTTP (the HTTP scenario measures identify end to end).
 */
import { pathToFileURL } from "node:url"
import { Gallery } from "../src/domain/Gallery.js"
import type { BenchContext } from "./support/context.js"
import type { Section } from "./support/report.js"
import { fmtRatio, fmtSummary, pairedRatio, summarize, type Summary } from "./support/stats.js"

export interface IdentifyBenchOptions {
  readonly sizes?: ReadonlyArray<number>
  readonly dimension?: number
  readonly rounds?: number
  /** Probes per round and size; a round's figure is the median over its probes. */
  readonly probes?: number
  readonly topK?: number
  readonly threshold?: number
  readonly log?: (message: string) => void
}

export interface IdentifyBenchRow {
  readonly templates: number
  readonly dimension: number
  readonly probesPerRound: number
  /** Milliseconds per probe: median over rounds of each round's median, and its range. */
  readonly gatehouseMs: Summary
  readonly baselineMs: Summary
  /** Gatehouse time over baseline time, paired by round. */
  readonly ratio: Summary
  /** Every probe found the same best template in both. */
  readonly agree: boolean
}

/** Deterministic pseudo-random numbers (mulberry32), so every run searches the same data. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

/** `count` normalised vectors of `dimension` values in one block. */
const vectors = (count: number, dimension: number, next: () => number): Float32Array => {
  const block = new Float32Array(count * dimension)
  for (let row = 0; row < count; row++) {
    let sum = 0
    for (let i = 0; i < dimension; i++) {
      const v = next() * 2 - 1
      block[row * dimension + i] = v
      sum += v * v
    }
    const norm = Math.sqrt(sum)
    for (let i = 0; i < dimension; i++) block[row * dimension + i] /= norm
  }
  return block
}

/**
 * The baseline: what anyone would write first. One running sum per row, the best row kept.
 * Returns the best row so the work cannot be optimised away.
 */
const plainLoop = (block: Float32Array, count: number, probe: Float32Array, dimension: number): number => {
  let best = -Infinity
  let bestRow = -1
  for (let row = 0; row < count; row++) {
    let sum = 0
    const offset = row * dimension
    for (let i = 0; i < dimension; i++) sum += block[offset + i] * probe[i]
    if (sum > best) {
      best = sum
      bestRow = row
    }
  }
  return bestRow
}

const time = (f: () => void): number => {
  const started = performance.now()
  f()
  return performance.now() - started
}

const median = (values: ReadonlyArray<number>) => {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** Measures every size; rows are returned in the order of `sizes`. */
export const runIdentifyBench = async (options: IdentifyBenchOptions = {}): Promise<Array<IdentifyBenchRow>> => {
  const sizes = options.sizes ?? [10_000, 100_000]
  const dimension = options.dimension ?? 512
  const rounds = options.rounds ?? 5
  const probes = options.probes ?? 20
  const topK = options.topK ?? 5
  const threshold = options.threshold ?? 0.4
  const log = options.log ?? (() => {})
  const rows: Array<IdentifyBenchRow> = []

  for (const size of sizes) {
    const next = random(size)
    const block = vectors(size, dimension, next)
    const gallery = new Gallery(dimension, size)
    for (let row = 0; row < size; row++) {
      gallery.upsert({
        templateId: `t${row}`,
        personId: `p${row}`,
        vector: block.subarray(row * dimension, (row + 1) * dimension)
      })
    }
    // Probes near a random enrolled template, as at a gate: a noisy copy of someone's face.
    const probeSet = Array.from({ length: probes }, () => {
      const target = Math.floor(next() * size)
      const noise = vectors(1, dimension, next)
      const probe = new Float32Array(dimension)
      let sum = 0
      for (let i = 0; i < dimension; i++) {
        probe[i] = block[target * dimension + i] + 0.5 * noise[i]
        sum += probe[i] * probe[i]
      }
      for (let i = 0; i < dimension; i++) probe[i] /= Math.sqrt(sum)
      return probe
    })

    // Warm both up so the JIT has compiled them before anything is timed.
    for (let i = 0; i < 3; i++) {
      gallery.search(probeSet[i % probes], topK, threshold)
      plainLoop(block, size, probeSet[i % probes], dimension)
    }

    let agree = true
    const ours: Array<number> = []
    const theirs: Array<number> = []
    for (let round = 0; round < rounds; round++) {
      const a: Array<number> = []
      const b: Array<number> = []
      for (const probe of probeSet) {
        // Alternate which goes first so neither always runs with a warmer cache.
        let found = ""
        let bestRow = -1
        const runOurs = () => a.push(time(() => found = gallery.search(probe, topK, threshold)[0]?.personId ?? ""))
        const runTheirs = () => b.push(time(() => bestRow = plainLoop(block, size, probe, dimension)))
        if (round % 2 === 0) {
          runOurs()
          runTheirs()
        } else {
          runTheirs()
          runOurs()
        }
        if (found !== `p${bestRow}`) agree = false
      }
      ours.push(median(a))
      theirs.push(median(b))
      log(`identify ${size}: round ${round + 1} gatehouse ${median(a).toFixed(2)} ms, plain ${median(b).toFixed(2)} ms`)
    }

    rows.push({
      templates: size,
      dimension,
      probesPerRound: probes,
      gatehouseMs: summarize(ours),
      baselineMs: summarize(theirs),
      ratio: pairedRatio(ours, theirs),
      agree
    })
  }
  return rows
}

/** The rows as a BENCHMARKS.md section. */
export const identifySection = (rows: ReadonlyArray<IdentifyBenchRow>): Section => ({
  title: "Identification",
  intro: [
    "One probe searched against one event gallery of random normalised 512-dimension templates (one",
    "per person), in process: the gallery the service searches (exact top-5 above the model",
    "threshold over one contiguous Float32Array, scored by the WebAssembly SIMD kernel in",
    "`src/domain/Kernel.ts`) beside a plain JavaScript loop with one running sum per row that keeps",
    "only the best row, over the same data. Milliseconds per probe; a ratio below 1 means Gatehouse",
    "is faster. \"Same best match\" checks that both found the same person for every probe."
  ].join("\n"),
  tables: [{
    head: ["Templates", "Gatehouse ms/probe", "Plain loop ms/probe", "Ratio", "Same best match"],
    numeric: true,
    rows: rows.map((r) => [
      r.templates.toLocaleString("en-US"),
      fmtSummary(r.gatehouseMs),
      fmtSummary(r.baselineMs),
      fmtRatio(r.ratio),
      r.agree ? "yes" : "no"
    ])
  }]
})

/** For `npm run bench`. */
export const identifyScenario = async (context: BenchContext): Promise<Section> =>
  identifySection(
    await runIdentifyBench({
      rounds: context.rounds,
      log: context.log,
      ...(context.quick ? { sizes: [1_000, 10_000], probes: 5 } : {})
    })
  )

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const quick = process.argv.includes("--quick")
  const rounds = Number(process.argv.find((a) => a.startsWith("--rounds="))?.slice(9) ?? 5)
  const log = (message: string) => process.stderr.write(`${message}\n`)
  runIdentifyBench({ rounds, log, ...(quick ? { sizes: [1_000, 10_000], probes: 5 } : {}) }).then((rows) => {
    for (const r of rows) {
      process.stdout.write(
        `${r.templates} x ${r.dimension}: gatehouse ${fmtSummary(r.gatehouseMs)} ms, plain loop ${
          fmtSummary(r.baselineMs)
        } ms, ratio ${fmtRatio(r.ratio)}, same best match: ${r.agree}\n`
      )
    }
  })
}
