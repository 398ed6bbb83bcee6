import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Cause, Effect, Either, Option, ParseResult, Schema } from "effect"
import * as Crypto from "node:crypto"
import { canonicalJson, PayloadNotJson } from "../../domain/Fingerprint.js"
import { AppConfig } from "../../layers/Config.js"
import { Admissions } from "../../services/Admissions.js"
import { Audit } from "../../services/Audit.js"
import { Enrollment } from "../../services/Enrollment.js"
import { Inbox } from "../../services/Inbox.js"
import { Matching } from "../../services/Matching.js"
import { GatehouseApi } from "../Api.js"
import {
  BatchTooLarge,
  type DeviceMessage,
  DeviceMessagesResult,
  MessageNotAttempted,
  type MessageResult,
  type MessageType,
  messageTypes,
  MessageTypeUnknown
} from "../api/DeviceMessages.js"
import { CurrentDevice } from "../DeviceAuth.js"
import { decodePayload, deviceMessages } from "../DeviceMessages.js"
import { idempotentAnswer } from "../Idempotency.js"
import { errorProblem, invalidProblem, type Problem, problem } from "../Problem.js"

type Item = typeof DeviceMessage.Type
type Result = typeof MessageResult.Type

const isMessageType = (type: string): type is MessageType => (messageTypes as ReadonlyArray<string>).includes(type)

const answered = (item: Item, status: number, replayed: boolean, body: unknown, isProblem: boolean): Result => ({
  messageId: item.messageId,
  type: item.type,
  status,
  replayed,
  // Nothing was stored: another copy is running (409 MessageInProgress), or the server failed.
  retry: status >= 500 || (isProblem && (body as Problem).code === "MessageInProgress"),
  ...(isProblem ? { problem: body as Problem } : { body })
})

const refused = (item: Item, p: Problem): Result => answered(item, p.status, false, p, true)

/** The batch itself as one message: its key with another batch is a conflict; it stores only a count. */
const BatchRecord = Schema.Struct({ messages: Schema.Int })

// The batch's fingerprint covers raw payloads, which may hold numbers JSON cannot carry (1e999
// parses to Infinity); such an item is refused on its own, and its number is named in the record.
const jsonSafe = (value: unknown): unknown =>
  typeof value === "number" && !Number.isFinite(value)
    ? { nonFinite: String(value) }
    : Array.isArray(value)
    ? value.map(jsonSafe)
    : value !== null && typeof value === "object"
    ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonSafe(v)]))
    : value

export const DeviceMessagesHandlers = HttpApiBuilder.group(
  GatehouseApi,
  "deviceMessages",
  (handlers) =>
    Effect.gen(function*() {
      const config = yield* AppConfig
      const inbox = yield* Inbox
      const messages = deviceMessages({
        enrollment: yield* Enrollment,
        matching: yield* Matching,
        audit: yield* Audit,
        admissions: yield* Admissions
      })

      /** One item, from its type to its answer; every failure becomes the item's result. */
      const deliver = (device: { readonly deviceId: string; readonly venueId: string }, item: Item, index: number) =>
        Effect.gen(function*() {
          const type = item.type
          if (!isMessageType(type)) {
            return refused(
              item,
              Option.getOrThrow(errorProblem(new MessageTypeUnknown({ type, supported: messageTypes })))
            )
          }

          const decoded = yield* Effect.either(decodePayload(type, item.payload))
          if (Either.isLeft(decoded)) {
            const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
            return refused(item, invalidProblem(issues, { code: "InvalidMessage", at: ["messages", index, "payload"] }))
          }

          const prepare = messages[type] as (
            device: { readonly deviceId: string; readonly venueId: string },
            messageId: string,
            payload: unknown
          ) => ReturnType<(typeof messages)[MessageType]>
          const ready = yield* prepare(device, item.messageId, decoded.right)
          try {
            canonicalJson(ready.body)
          } catch (error) {
            if (!(error instanceof PayloadNotJson)) throw error
            const path = `messages[${index}].payload${error.path === "" ? "" : `.${error.path}`}`
            return refused(
              item,
              problem(400, "InvalidMessage", `${path}: ${error.reason}`, { errors: [{ path, message: error.reason }] })
            )
          }

          const answer = yield* idempotentAnswer(
            {
              deviceId: device.deviceId,
              key: item.messageId,
              payload: ready.body,
              method: ready.method,
              url: ready.url,
              // A copy of this batch running beside this one (a resend crossing the first) waits for
              // each message's outcome and replays it rather than failing with 409.
              concurrent: "wait",
              ...ready.options
            },
            ready.run
          )
          return answered(item, answer.status, answer.replayed, answer.body, answer.problem)
        }).pipe(
          Effect.catchAllCause((cause) => {
            if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
            const failure = Cause.failureOption(cause)
            const typed = Option.flatMap(failure, errorProblem)
            if (Option.isSome(typed)) return Effect.succeed(refused(item, typed.value))
            const correlationId = Crypto.randomUUID()
            return Effect.as(
              Effect.logError("device message failed unexpectedly", cause).pipe(
                Effect.annotateLogs({ component: "http", messageId: item.messageId, correlationId })
              ),
              refused(
                item,
                problem(500, "InternalError", "the server failed to handle this message; quote the correlation id", {
                  correlationId
                })
              )
            )
          }),
          Effect.annotateLogs({ messageId: item.messageId })
        )

      return handlers.handle("upload", ({ headers, payload }) =>
        Effect.gen(function*() {
          const device = yield* CurrentDevice
          const count = payload.messages.length
          if (count > config.deviceBatchMaxMessages) {
            return yield* new BatchTooLarge({ limit: config.deviceBatchMaxMessages, count })
          }

          yield* inbox.receive(
            {
              scope: `device:${device.deviceId}`,
              key: headers["idempotency-key"],
              payload: { method: "POST", url: "/v1/device-messages", body: jsonSafe(payload) }
            },
            Effect.succeed({ messages: count }),
            { success: BatchRecord, concurrent: "wait" }
          )

          const results: Array<Result> = []
          let blockedBy: string | undefined
          for (const [index, item] of payload.messages.entries()) {
            if (blockedBy !== undefined) {
              results.push(refused(item, Option.getOrThrow(errorProblem(new MessageNotAttempted({ blockedBy })))))
              continue
            }
            const result = yield* deliver(device, item, index)
            results.push(result)
            if (result.retry) blockedBy = item.messageId
          }

          yield* Effect.logDebug("device batch answered").pipe(Effect.annotateLogs({
            component: "http",
            deviceId: device.deviceId,
            messages: count,
            replayed: results.filter((r) => r.replayed).length,
            retry: results.filter((r) => r.retry).length
          }))
          const body = yield* Effect.orDie(Schema.encode(DeviceMessagesResult)({ results }))
          return HttpServerResponse.unsafeJson(body, {
            status: 200,
            headers: results.every((r) => r.replayed) ? { "idempotent-replayed": "true" } : {}
          })
        }))
    })
)
