import type * as Http from "node:http"
import { benchTables } from "./baseline.js"
import { benchModel } from "./gallery.js"
import { adminKey, venueFixture } from "./support/api.js"
import type { BenchContext } from "./support/context.js"
import { createDatabase, exec } from "./support/database.js"
import { load, type Shot } from "./support/load.js"
import type { Section } from "./support/report.js"
import { forkChild, freePort, tempDataDir } from "./support/service.js"
import { fmt, fmtRatio, fmtSummary, mib, pairedRatio } from "./support/stats.js"
import { Measures } from "./support/variants.js"
import { nearby, vector } from "./support/vectors.js"

interface Variant {
  readonly name: string
  readonly label: string
  /** Called once per round before the load, with the concurrency. */
  readonly shots: (round: string) => (i: number) => Shot
  readonly ok: (status: number, headers: Http.IncomingHttpHeaders) => boolean
}

const baselineName = "insert"

/**
 * HTTP: requests per second and latency of the device endpoints at 1, 16 and 64 connections,
 * beside the same server answering a minimal endpoint that reads the body and does one INSERT.
 */
export const httpScenario = async (context: BenchContext): Promise<Section> => {
  const levels = [1, 16, 64]
  const durationMs = context.quick ? 500 : 3_000
  const database = await createDatabase(context.server, "http")
  const port = await freePort()
  const service = await forkChild("server.ts", {
    DATABASE_URL: database.url,
    PORT: String(port),
    HOST: "127.0.0.1",
    DATA_DIR: tempDataDir(),
    LOG_LEVEL: "warn",
    ADMIN_KEY: adminKey
  })
  const measures = new Measures()
  const galleryPeople = context.quick ? 50 : 1_000
  let variants: ReadonlyArray<Variant> = []
  try {
    const gallerySeed = 1_000_000
    await exec(database.url, benchTables)
    const fixture = await venueFixture(port)
    context.log(`http: enrolling ${galleryPeople} people into the event's gallery`)
    await service.call("fillGallery", { ...fixture, count: galleryPeople, seed: gallerySeed })
    const device = { authorization: `Bearer ${fixture.deviceKey}` }
    // Probes are noisy second looks at enrolled people; precomputed so the generator stays cheap.
    const probes = Array.from({ length: 200 }, (_, i) =>
      JSON.stringify({
        eventId: fixture.eventId,
        probe: { modelId: benchModel, vector: nearby(vector(gallerySeed + (i * 7919) % galleryPeople), i) }
      }))
    // The minimal endpoint gets a body of the size of an enrollment's, so reading it costs the same.
    const body = JSON.stringify({ note: "x".repeat(probes[0]!.length) })

    // Enrollment over HTTP is measured once the API offers it (POST /v1/people).
    const openApi = await (await fetch(`http://127.0.0.1:${port}/openapi.json`)).json() as any
    const canEnroll = openApi?.paths?.["/v1/people"]?.post !== undefined
    const enrollBody = (i: number) =>
      JSON.stringify({
        consent: {
          purposes: ["venue-admission"],
          noticeVersion: "bench",
          jurisdiction: "EU-GDPR",
          method: "kiosk-signature",
          givenAt: "2026-01-01T00:00:00.000Z"
        },
        templates: [{ modelId: benchModel, vector: vector(i) }]
      })
    // Keys that enrollment stored in the current round, with the index that rebuilds their body.
    let stored: Array<{ key: string; i: number }> = []
    const enrollVariants: ReadonlyArray<Variant> = canEnroll ?
      [
        {
          name: "enroll",
          label: "enroll (POST /v1/people): fresh Idempotency-Key, one 512-dimension template",
          shots: (round) => {
            stored = []
            return (i) => {
              const key = `${round}-${i}`
              stored.push({ key, i })
              return {
                method: "POST",
                path: "/v1/people",
                headers: { ...device, "idempotency-key": key },
                body: enrollBody(i)
              }
            }
          },
          ok: (status, headers) => status === 201 && headers["idempotent-replayed"] === undefined
        },
        {
          name: "replay",
          label: "enroll replayed: a stored Idempotency-Key and the same body",
          shots: () => {
            const keys = stored.slice(0, Math.max(1, stored.length - 64))
            return (i) => {
              const { i: index, key } = keys[i % keys.length]!
              return {
                method: "POST",
                path: "/v1/people",
                headers: { ...device, "idempotency-key": key },
                body: enrollBody(index)
              }
            }
          },
          ok: (status, headers) => status === 201 && headers["idempotent-replayed"] === "true"
        }
      ] :
      []
    if (!canEnroll) context.log("http: POST /v1/people is not offered yet; enrollment variants skipped")

    variants = [
      {
        name: baselineName,
        label: "minimal endpoint: one INSERT",
        shots: (round) => (i) => ({
          method: "POST",
          path: "/bench/insert",
          headers: { "idempotency-key": `${round}-${i}` },
          body
        }),
        ok: (status) => status === 201
      },
      ...enrollVariants,
      {
        name: "identify",
        label: `identify: 1:N search of a ${galleryPeople.toLocaleString("en-US")}-person event gallery`,
        shots: () => (i) => ({
          method: "POST",
          path: "/v1/identify",
          headers: device,
          body: probes[i % probes.length]!
        }),
        ok: (status) => status === 200
      }
    ]

    for (const connections of levels) {
      for (let round = 0; round < context.rounds; round++) {
        for (const variant of variants) {
          const run = `${variant.name}-c${connections}-r${round}`
          service.memory.start()
          const result = await load({ port, connections, durationMs, next: variant.shots(run), ok: variant.ok })
          const rss = service.memory.stop()
          if (result.errors > 0) {
            throw new Error(
              `${run}: ${result.errors} of ${result.requests} requests failed, first: ${result.firstError}`
            )
          }
          const level = String(connections)
          measures.add(level, variant.name, "rate", result.perSecond)
          measures.add(level, variant.name, "p50", result.p50Ms)
          measures.add(level, variant.name, "p99", result.p99Ms)
          measures.add(level, variant.name, "rss", rss)
          context.log(
            `http ${run}: ${fmt(result.perSecond)} req/s, p50 ${fmt(result.p50Ms)} ms, p99 ${fmt(result.p99Ms)} ms`
          )
        }
      }
    }
  } finally {
    await service.stop()
    await database.drop()
  }

  const rows = levels.flatMap((connections) =>
    variants.map((variant) => {
      const level = String(connections)
      const ratio = (measure: string) =>
        variant.name === baselineName
          ? "1"
          : fmtRatio(
            pairedRatio(measures.get(level, variant.name, measure), measures.get(level, baselineName, measure))
          )
      return [
        String(connections),
        variant.label,
        fmtSummary(measures.summary(level, variant.name, "rate"), 0),
        ratio("rate"),
        fmtSummary(measures.summary(level, variant.name, "p50")),
        fmtSummary(measures.summary(level, variant.name, "p99")),
        ratio("p99"),
        fmt(mib(measures.max(level, variant.name, "rss")), 0)
      ]
    })
  )
  return {
    title: "HTTP",
    intro: [
      `Closed-loop load over loopback keep-alive connections for ${fmt(durationMs / 1000, 1)} s per round. The`,
      "baseline is the same server process (same HTTP stack, middleware and connection pool) answering a",
      "bench-only endpoint that reads the JSON body and does one INSERT. The load generator runs on the same",
      "2 cores as the service and PostgreSQL, so it takes its share from every variant alike."
    ].join(" "),
    tables: [{
      head: [
        "Connections",
        "Variant",
        "Requests/s",
        "Ratio (req/s)",
        "p50 ms",
        "p99 ms",
        "Ratio (p99)",
        "Peak RSS (MiB)"
      ],
      rows
    }]
  }
}
