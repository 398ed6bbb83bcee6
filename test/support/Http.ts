import { Effect } from "effect"
import { baseUrl } from "./Server.js"

export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly body: any
}

export interface RequestOptions {
  readonly body?: unknown
  /** Sent as is, for malformed bodies. */
  readonly raw?: string
  readonly headers?: Record<string, string>
  readonly key?: string
}

/** One real HTTP request to the test server. */
export const request = (method: string, path: string, options: RequestOptions = {}) =>
  Effect.flatMap(baseUrl, (base) =>
    Effect.promise(async (): Promise<Reply> => {
      const headers: Record<string, string> = { ...options.headers }
      if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`
      let body: string | undefined
      if (options.raw !== undefined) body = options.raw
      else if (options.body !== undefined) body = JSON.stringify(options.body)
      if (body !== undefined) headers["content-type"] ??= "application/json"
      const response = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body }) })
      const text = await response.text()
      let parsed: unknown = undefined
      try {
        parsed = text === "" ? undefined : JSON.parse(text)
      } catch {
        parsed = undefined
      }
      return { status: response.status, headers: response.headers, text, body: parsed }
    }))
