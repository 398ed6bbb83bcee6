import * as Http from "node:http"
import { quantile } from "./stats.js"

/** One request of a load run. */
export interface Shot {
  readonly method: "GET" | "POST"
  readonly path: string
  readonly headers?: Record<string, string>
  readonly body?: string
}

export interface LoadOptions {
  readonly port: number
  /** Concurrent keep-alive connections, each sending its next request when the last answered. */
  readonly connections: number
  /** Stop starting requests after this long. */
  readonly durationMs: number
  /** Stop starting requests after this many, if sooner. */
  readonly maxRequests?: number
  /** The i-th request of the run (i counts from 0 across all connections). */
  readonly next: (i: number) => Shot
  /** Whether an answer counts as a success; others are errors. */
  readonly ok: (status: number, headers: Http.IncomingHttpHeaders) => boolean
}

export interface LoadResult {
  readonly requests: number
  readonly errors: number
  readonly elapsedMs: number
  readonly perSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly statuses: Readonly<Record<string, number>>
  readonly firstError?: string
}

const send = (agent: Http.Agent, port: number, shot: Shot) =>
  new Promise<{ status: number; headers: Http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const headers: Record<string, string | number> = { ...shot.headers }
    if (shot.body !== undefined) {
      headers["content-type"] = "application/json"
      headers["content-length"] = Buffer.byteLength(shot.body)
    }
    const request = Http.request(
      { agent, host: "127.0.0.1", port, method: shot.method, path: shot.path, headers },
      (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString()
          }))
        response.on("error", reject)
      }
    )
    request.on("error", reject)
    request.end(shot.body)
  })

/**
 * A closed-loop load generator on loopback: `connections` keep-alive sockets, each with one request
 * in flight. Latency is measured per request from send to the last byte of the answer.
 */
export const load = async (options: LoadOptions): Promise<LoadResult> => {
  const latencies: Array<number> = []
  const statuses: Record<string, number> = {}
  let errors = 0
  let issued = 0
  let firstError: string | undefined
  const max = options.maxRequests ?? Number.POSITIVE_INFINITY
  const started = performance.now()
  const deadline = started + options.durationMs

  const connection = async () => {
    const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      while (performance.now() < deadline && issued < max) {
        const shot = options.next(issued++)
        const t0 = performance.now()
        try {
          const { body, headers, status } = await send(agent, options.port, shot)
          latencies.push(performance.now() - t0)
          statuses[status] = (statuses[status] ?? 0) + 1
          if (!options.ok(status, headers)) {
            errors++
            firstError ??= `${status} ${body.slice(0, 300)}`
          }
        } catch (error) {
          errors++
          statuses.network = (statuses.network ?? 0) + 1
          firstError ??= String(error)
        }
      }
    } finally {
      agent.destroy()
    }
  }

  await Promise.all(Array.from({ length: options.connections }, connection))
  const elapsedMs = performance.now() - started
  return {
    requests: latencies.length,
    errors,
    elapsedMs,
    perSecond: (latencies.length - errors) / (elapsedMs / 1000),
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
    statuses,
    ...(firstError === undefined ? {} : { firstError })
  }
}
