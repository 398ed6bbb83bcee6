import {
  HttpApi,
  HttpApiError,
  HttpApiSchema,
  type HttpApp,
  HttpIncomingMessage,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import { Cause, Effect, Metric, MetricBoundaries, Option, Predicate, Schema } from "effect"
import * as Crypto from "node:crypto"
import { isTransient } from "../services/Database.js"

/**
 * RFC 9457 problem details. Every error answer of the API has this shape and the
 * `application/problem+json` content type; `code` repeats the error's tag for programs.
 */
export interface Problem {
  readonly type: string
  readonly title: string
  readonly status: number
  readonly detail: string
  readonly code: string
  readonly [extra: string]: unknown
}

const kebab = (tag: string) => tag.replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase()
const sentence = (tag: string) => {
  const words = tag.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase()
  return words.charAt(0).toUpperCase() + words.slice(1)
}

export const problem = (
  status: number,
  code: string,
  detail: string,
  extra: Record<string, unknown> = {}
): Problem => ({
  ...extra,
  type: `urn:gatehouse:problem:${kebab(code)}`,
  title: sentence(code),
  status,
  detail,
  code
})

export const problemResponse = (body: Problem, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson(body, {
    status: body.status,
    contentType: "application/problem+json",
    headers
  })

const formatPath = (path: ReadonlyArray<PropertyKey>) =>
  path.reduce<string>(
    (acc, key) => typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`,
    ""
  )

// Parse messages for unions and classes can quote whole schemas; operators need the field and a
// short reason, not the schema text.
const shortMessage = (message: string) => {
  const line = message.split("\n")[0] ?? message
  return line.length > 160 ? `${line.slice(0, 157)}...` : line
}

/**
 * A 400 problem naming each field that failed to decode and why (a short reason, never the
 * schema text). `at` prefixes the paths: the place of the decoded value within the request body.
 */
export const invalidProblem = (
  issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }>,
  options: { readonly code?: string; readonly at?: ReadonlyArray<PropertyKey> } = {}
): Problem => {
  const at = options.at ?? []
  const errors = issues.map((issue) => ({
    path: formatPath([...at, ...issue.path]) || "(body)",
    message: shortMessage(issue.message)
  }))
  const first = errors[0]
  return problem(
    400,
    options.code ?? "InvalidRequest",
    first === undefined ? "the request is invalid" : `${first.path}: ${first.message}`,
    { errors }
  )
}

const decodeProblem = (error: HttpApiError.HttpApiDecodeError) => invalidProblem(error.issues)

const isTooLarge = (error: HttpServerError.RequestError) =>
  /maxBytes exceeded/.test(String(error.cause)) || /maxBytes exceeded/.test(error.description ?? "")

/** The HTTP status a typed error class declares through `HttpApiSchema.annotations`, if any. */
const declaredStatus = (error: object): number | undefined => {
  const ast = (error.constructor as Partial<Schema.Schema.Any>).ast
  if (ast === undefined) return undefined
  const status = HttpApiSchema.getStatus(ast, 0)
  return status === 0 ? undefined : status
}

const typedProblem = (error: object & { readonly _tag: string; readonly message: string }, status: number) => {
  let fields: Record<string, unknown> = {}
  try {
    const encoded = Schema.encodeUnknownSync(error.constructor as unknown as Schema.Schema<unknown, unknown>)(error)
    if (Predicate.isRecord(encoded)) fields = { ...encoded }
  } catch {
    fields = {}
  }
  delete fields._tag
  return problem(status, error._tag, error.message || sentence(error._tag), fields)
}

/**
 * The problem a typed error answers with when its class declares an HTTP status (none for other
 * values): lets an adapter render, store and replay an error's answer itself.
 */
export const errorProblem = (error: unknown): Option.Option<Problem> => {
  if (!Predicate.isObject(error) || !Predicate.hasProperty(error, "_tag") || typeof error._tag !== "string") {
    return Option.none()
  }
  const status = declaredStatus(error)
  return status === undefined ? Option.none() : Option.some(typedProblem(error as any, status))
}

/** Maps a request's failure to a problem; defects and unknown failures become a 500 with a correlation id. */
const causeToProblem = (cause: Cause.Cause<unknown>, requestId: string) =>
  Effect.gen(function*() {
    // The API builder reads bodies with `orDie`: an unreadable or oversized body is a defect.
    const unreadable = Option.filter(Cause.dieOption(cause), (d) => d instanceof HttpServerError.RequestError)
    const failure = Option.orElse(Cause.failureOption(cause), () => unreadable)
    if (Option.isSome(failure)) {
      const error = failure.value
      if (error instanceof HttpApiError.HttpApiDecodeError) return decodeProblem(error)
      if (error instanceof HttpServerError.RouteNotFound) {
        return problem(404, "RouteNotFound", `no route for ${error.request.method} ${error.request.url.split("?")[0]}`)
      }
      if (error instanceof HttpServerError.RequestError) {
        return isTooLarge(error)
          ? problem(413, "PayloadTooLarge", "the request body is larger than the server accepts")
          : problem(400, "MalformedBody", "the request body is not valid JSON")
      }
      if (Predicate.isTagged(error, (error as { _tag: string })._tag) && Predicate.hasProperty(error, "message")) {
        const status = declaredStatus(error)
        if (status !== undefined) return typedProblem(error as any, status)
      }
    }
    // The database unreachable or every pooled connection busy, still so after the handler's
    // retries: not a bug, and worth resending shortly, as a 503 says.
    if (isTransient(Cause.squash(cause))) {
      yield* Effect.logWarning("request refused, the database is unavailable", Cause.squash(cause)).pipe(
        Effect.annotateLogs({ component: "http", correlationId: requestId })
      )
      return problem(503, "DatabaseUnavailable", "the database cannot be reached right now; retry shortly", {
        correlationId: requestId
      })
    }
    yield* Effect.logError("request failed unexpectedly", cause).pipe(
      Effect.annotateLogs({ component: "http", correlationId: requestId })
    )
    return problem(500, "InternalError", "the server failed to handle the request; quote the correlation id", {
      correlationId: requestId
    })
  })

const requestCount = Metric.counter("gatehouse_http_requests_total", {
  description: "HTTP requests by route, method and status",
  incremental: true
})
const requestDuration = Metric.histogram(
  "gatehouse_http_request_duration_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 14 }),
  "HTTP request latency by route, method and status"
)

type RouteTable = ReadonlyArray<{ readonly method: string; readonly path: string; readonly pattern: RegExp }>

/** The API's route templates, so metrics are labelled `/v1/people/:personId`, never with ids. */
export const routeTable = (api: HttpApi.HttpApi.Any): RouteTable => {
  const routes: Array<{ method: string; path: string; pattern: RegExp }> = []
  HttpApi.reflect(api as any, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => {
      const source = endpoint.path.split("/").map((part) =>
        part.startsWith(":") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      ).join("/")
      routes.push({ method: endpoint.method, path: endpoint.path, pattern: new RegExp(`^${source}/?$`) })
    }
  })
  return routes
}

const routeLabel = (routes: RouteTable, method: string, url: string) => {
  const path = url.split("?")[0] ?? url
  const found = routes.find((r) => r.method === method && r.pattern.test(path))
  if (found !== undefined) return found.path
  if (path === "/docs" || path.startsWith("/docs/") || path === "/openapi.json") return path
  return "unmatched"
}

const validRequestId = /^[A-Za-z0-9._:-]{8,128}$/

/** Deepest nesting of arrays and objects a request body may have; no API shape comes near it. */
export const maxJsonDepth = 64

/**
 * Whether `text` nests arrays and objects deeper than `limit`, counted outside strings. Decoding
 * (and describing the failure of) a body nested thousands deep exhausts the stack, so such a body
 * is refused before anything parses it.
 */
export const nestedDeeperThan = (text: string, limit: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // a backslash escapes the next character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 || c === 123) {
      if (++depth > limit) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

/**
 * The outermost API middleware: bounds the body before anything parses it, turns every failure
 * into a problem+json answer, tags answers with a request id and records request metrics.
 */
export const problemMiddleware =
  (options: { readonly maxBodyBytes: number; readonly routes: RouteTable }) =>
  (app: HttpApp.Default): HttpApp.Default =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const started = performance.now()
      const offered = request.headers["x-request-id"]
      const requestId = offered !== undefined && validRequestId.test(offered) ? offered : Crypto.randomUUID()
      const declaredLength = Number(request.headers["content-length"] ?? "0")

      // A body without a declared length could only be bounded by reading it, and the platform
      // answers an oversized stream by destroying the socket. Devices always know the length.
      const undeclared = request.headers["content-length"] === undefined &&
        request.headers["transfer-encoding"] !== undefined

      // The body is read once and kept: the handler's decoding reads the same text.
      const tooDeep = !undeclared && declaredLength > 0 && declaredLength <= options.maxBodyBytes &&
        (yield* request.text.pipe(
          Effect.map((text) => nestedDeeperThan(text, maxJsonDepth)),
          HttpIncomingMessage.withMaxBodySize(Option.some(options.maxBodyBytes)),
          Effect.orElseSucceed(() => false)
        ))

      const response = undeclared
        ? problemResponse(problem(411, "LengthRequired", "send the request body with a Content-Length header"))
        : declaredLength > options.maxBodyBytes
        ? problemResponse(problem(413, "PayloadTooLarge", `the request body exceeds ${options.maxBodyBytes} bytes`))
        : tooDeep
        ? problemResponse(
          problem(400, "BodyTooDeep", `the request body nests arrays and objects deeper than ${maxJsonDepth} levels`)
        )
        : yield* app.pipe(
          HttpIncomingMessage.withMaxBodySize(Option.some(options.maxBodyBytes)),
          Effect.catchAllCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.failCause(cause)
              : Effect.map(causeToProblem(cause, requestId), (body) => problemResponse(body))
          )
        )

      const tags = {
        route: routeLabel(options.routes, request.method, request.url),
        method: request.method,
        status: String(response.status)
      }
      const tagged = <M extends Metric.Metric<any, any, any>>(metric: M): M =>
        Object.entries(tags).reduce((m, [k, v]) => Metric.tagged(m, k, v) as M, metric)
      yield* Metric.increment(tagged(requestCount))
      yield* Metric.update(tagged(requestDuration), (performance.now() - started) / 1000)

      return HttpServerResponse.setHeader(response, "x-request-id", requestId)
    })
