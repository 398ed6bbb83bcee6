import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Http from "node:http"
import { freshDatabase } from "../support/Database.js"
import { spawnService } from "../support/Process.js"

interface Outcome {
  readonly status: number
  readonly body: string
}

/** One GET over the agent's kept-alive connections; a reset or refused connection is `undefined`. */
const get = (agent: Http.Agent, url: string) =>
  new Promise<Outcome | undefined>((resolve) => {
    const request = Http.get(url, { agent }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => body += chunk)
      response.on("end", () => resolve(response.complete ? { status: response.statusCode ?? 0, body } : undefined))
      response.on("error", () => resolve(undefined))
    })
    request.on("error", () => resolve(undefined))
  })

/** Sends requests back to back until the service stops answering; returns every answer it got. */
const hammer = async (url: string) => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets: 1 })
  const answers: Array<Outcome> = []
  try {
    while (true) {
      const outcome = await get(agent, `${url}/health/live`)
      if (outcome === undefined) return answers
      answers.push(outcome)
    }
  } finally {
    agent.destroy()
  }
}

describe("the service process under load", () => {
  it.live(
    "exits 0 after SIGTERM while keep-alive clients keep sending, answering each request it took",
    () =>
      Effect.gen(function*() {
        const db = yield* freshDatabase
        const service = yield* spawnService({ DATABASE_URL: db.url, SHUTDOWN_GRACE_MS: "3000" })

        const clients = Array.from({ length: 8 }, () => hammer(service.url))
        // Every client has had answers over its kept-alive connection before the signal.
        yield* Effect.sleep("1 second")
        service.signal("SIGTERM")
        const code = yield* Effect.promise(() => service.exited)
        const answers = yield* Effect.promise(() => Promise.all(clients))

        expect(code).toBe(0)
        expect(service.output()).toContain("shutting down")
        for (const answered of answers) {
          expect(answered.length).toBeGreaterThan(0)
          for (const answer of answered) {
            expect(answer.status).toBe(200)
            expect(JSON.parse(answer.body)).toBeTypeOf("object")
          }
        }
      }).pipe(Effect.scoped),
    60_000
  )
})
