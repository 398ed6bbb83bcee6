import { type HttpApiEndpoint, type HttpMethod, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Either, Option, Schema } from "effect"
import { IdempotencyKeyReused, Inbox, InboxUnavailable, MessageInProgress } from "../services/Inbox.js"
import { errorProblem } from "./Problem.js"

/**
 * HTTP idempotency for mutating device endpoints, after the IETF Idempotency-Key header draft
 * and Stripe's practice, on top of the inbox:
 *
 * - the `Idempotency-Key` header is required: missing or malformed is a 400 problem;
 * - keys are scoped per device: one device never sees another's results;
 * - the same key with the same request (method, URL and body; key order and whitespace do not
 *   matter) replays the first answer, status and body, with `Idempotent-Replayed: true`;
 * - the same key with another request is a 422 problem (`IdempotencyKeyReused`);
 * - while the first copy is still running, a copy gets a 409 problem (`MessageInProgress`);
 * - a failure that is not the request's fault stores nothing (503 `InboxUnavailable`, or the
 *   handler's own error): the device retries with the same key and the handler runs again.
 *
 * Usage, in an API group and its handlers:
 *
 * ```ts
 * HttpApiEndpoint.post("enroll", "/v1/people").setPayload(Enrollment)
 *   .addSuccess(Enrolled, { status: 201 }).addError(ConsentMissing)
 *   .pipe(idempotentEndpoint)
 *
 * handlers.handle("enroll", ({ headers, payload }) =>
 *   Effect.flatMap(CurrentDevice, (device) =>
 *     idempotent({
 *       deviceId: device.id,
 *       key: headers["idempotency-key"],
 *       payload,
 *       success: Enrolled,
 *       status: 201,
 *       rejections: ConsentMissing
 *     }, enrollment.enroll(payload))))
 * ```
 */

const keyCharacters = "[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,255}"
const keyPattern = new RegExp(`^(?:"${keyCharacters}"|${keyCharacters})$`)

/**
 * An idempotency key: 1 to 255 visible ASCII characters without `"` or `\`, optionally sent as
 * a structured-field string (`"key"`, as the IETF draft writes it); both spellings are one key.
 */
export const IdempotencyKey = Schema.transform(
  Schema.String.pipe(Schema.filter((s) => keyPattern.test(s), {
    message: () => "the Idempotency-Key header must be 1 to 255 visible ASCII characters (a UUID is a good choice)"
  })),
  Schema.String,
  {
    strict: true,
    decode: (s) => s.startsWith("\"") ? s.slice(1, -1) : s,
    encode: (s) => s
  }
).annotations({
  identifier: "IdempotencyKey",
  description: "Client-chosen unique key of this request; retries of the request reuse it."
})

/** The header field, for endpoints that declare more headers of their own. */
export const idempotencyKeyField = Schema.propertySignature(IdempotencyKey).annotations({
  missingMessage: () => "the Idempotency-Key header is required on this endpoint"
})

/** Headers of an idempotent endpoint (schema header names are lower-case). */
export const IdempotencyHeaders = Schema.Struct({ "idempotency-key": idempotencyKeyField })

/**
 * Makes an endpoint idempotent in its contract: requires the `Idempotency-Key` header and
 * declares the 422, 409 and 503 answers. Pipe it after the endpoint's own errors; an endpoint
 * with more headers spreads `idempotencyKeyField` into its own header schema instead.
 */
export const idempotentEndpoint = <
  Name extends string,
  Method extends HttpMethod.HttpMethod,
  Path,
  UrlParams,
  Payload,
  Headers,
  Success,
  Error,
  R,
  RE
>(endpoint: HttpApiEndpoint.HttpApiEndpoint<Name, Method, Path, UrlParams, Payload, Headers, Success, Error, R, RE>) =>
  endpoint
    .setHeaders(IdempotencyHeaders)
    .addError(IdempotencyKeyReused)
    .addError(MessageInProgress)
    .addError(InboxUnavailable)

/** A first answer as stored: replays send the same status and body. */
const StoredAnswer = Schema.Struct({
  status: Schema.Int,
  problem: Schema.Boolean,
  body: Schema.Unknown
})
type StoredAnswer = typeof StoredAnswer.Type

/** A rejection's answer, as the inbox stores and replays it. */
class StoredRejection extends Schema.TaggedError<StoredRejection>()("StoredRejection", {
  answer: StoredAnswer
}) {}

export interface IdempotentOptions<A, I, F, FI> {
  /** The device the request acts for: keys are scoped per device. */
  readonly deviceId: string
  /** The decoded `idempotency-key` header. */
  readonly key: string
  /** The decoded request body (or whatever identifies the request besides method and URL). */
  readonly payload: unknown
  /** The endpoint's success schema: the body of the answer, also stored for replays. */
  readonly success: Schema.Schema<A, I>
  /** Status of a successful answer; default 200. */
  readonly status?: number
  /**
   * The handler's errors that are the request's fault (invalid input, a business refusal): each
   * must declare its HTTP status. They are stored and replayed; other failures are not.
   */
  readonly rejections?: Schema.Schema<F, FI>
  /**
   * The person the request is about, when its stored answer names them: an erasure of the person
   * removes the stored answer (`Inbox.forgetSubject`).
   */
  readonly subject?: string
}

const answer = (stored: StoredAnswer, replayed: boolean) => {
  const headers: Record<string, string> = replayed ? { "idempotent-replayed": "true" } : {}
  return HttpServerResponse.unsafeJson(stored.body, {
    status: stored.status,
    headers,
    ...(stored.problem ? { contentType: "application/problem+json" } : {})
  })
}

/** The answer of one idempotent message, first or replayed, without the HTTP envelope. */
export interface IdempotentAnswer {
  readonly status: number
  /** Whether `body` is a problem (a stored rejection). */
  readonly problem: boolean
  readonly body: unknown
  readonly replayed: boolean
}

/**
 * The core of `idempotent` for messages that do not arrive as their own HTTP request (items of a
 * device batch): `method` and `url` name the request the message stands for, so a batch item and
 * the same request sent alone with the same key are one message.
 */
export const idempotentAnswer = <A, I, E, R, F = never, FI = never>(
  options: IdempotentOptions<A, I, F, FI> & {
    readonly method: string
    readonly url: string
    /** What a copy does while another copy runs (see `Inbox.receive`); default `"fail"` (409). */
    readonly concurrent?: "wait" | "fail"
  },
  handler: Effect.Effect<A, E, R>
): Effect.Effect<
  IdempotentAnswer,
  Exclude<E, F | SqlError> | IdempotencyKeyReused | MessageInProgress | InboxUnavailable,
  R | Inbox
> =>
  Effect.gen(function*() {
    const inbox = yield* Inbox
    const isRejection = options.rejections === undefined ? () => false : Schema.is(options.rejections)

    const toAnswer = handler.pipe(
      Effect.flatMap((a) => Effect.orDie(Schema.encode(options.success)(a))),
      Effect.map((body): StoredAnswer => ({ status: options.status ?? 200, problem: false, body })),
      Effect.catchIf(
        (e): e is E & F => isRejection(e),
        (e) =>
          Option.match(errorProblem(e), {
            onNone: () => Effect.dieMessage("a stored rejection must declare its HTTP status"),
            onSome: (problem) =>
              Effect.fail(new StoredRejection({ answer: { status: problem.status, problem: true, body: problem } }))
          })
      )
    )

    const message = {
      scope: `device:${options.deviceId}`,
      key: options.key,
      payload: { method: options.method, url: options.url, body: options.payload }
    }
    const subject = options.subject
    const receipt = yield* inbox.receive(
      message,
      subject === undefined ? toAnswer : Effect.tap(toAnswer, () => inbox.markSubject(message, subject)),
      { success: StoredAnswer, failure: StoredRejection, concurrent: options.concurrent ?? "fail" }
    )
    const stored = Either.match(receipt.result, { onLeft: (r) => r.answer, onRight: (a) => a })
    return { ...stored, replayed: receipt.replayed }
  }) as any

/**
 * Runs `handler` once per (device, key) and answers with an `HttpServerResponse`: the first
 * answer, or its replay with `Idempotent-Replayed: true`. Returning a response from an HttpApi
 * handler is allowed: the builder sends it as is instead of encoding a success.
 */
export const idempotent = <A, I, E, R, F = never, FI = never>(
  options: IdempotentOptions<A, I, F, FI>,
  handler: Effect.Effect<A, E, R>
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  Exclude<E, F | SqlError> | IdempotencyKeyReused | MessageInProgress | InboxUnavailable,
  R | Inbox | HttpServerRequest.HttpServerRequest
> =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const result = yield* idempotentAnswer({ ...options, method: request.method, url: request.url }, handler)
    return answer(result, result.replayed)
  }) as any
