import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema, SchemaAST } from "effect"
import { EventId, PersonId } from "../../domain/Identity.js"
import { BoundedString } from "../../domain/Text.js"
import { DeviceAuth } from "../DeviceAuth.js"
import { IdempotencyKey, idempotentEndpoint } from "../Idempotency.js"
import { AdmissionRequest } from "./Admissions.js"
import { IdentifyRequest } from "./Matching.js"
import { AddTemplatesRequest, ConsentChange, EnrollRequest } from "./People.js"

/**
 * The id a device gives a message: what an `Idempotency-Key` is for a request sent alone, with
 * the same form. A batch item and a request sent alone with the same key are one message.
 */
export const MessageId = IdempotencyKey.annotations({
  identifier: "MessageId",
  description: "The device's id for this message (1 to 255 visible ASCII characters, a UUID is a good choice). " +
    "Every copy of the message carries it; it is the message's Idempotency-Key, shared with the single endpoints."
})

const personRef = { personId: PersonId }

export const AddTemplatesPayload = Schema.Struct({ ...personRef, ...AddTemplatesRequest.fields }).annotations({
  identifier: "AddTemplatesPayload",
  description: "POST /v1/people/{personId}/templates as a message: the person and the request body."
})

export const ConsentPayload = Schema.extend(Schema.Struct(personRef), ConsentChange).annotations({
  identifier: "ConsentPayload",
  description: "POST /v1/people/{personId}/consent as a message: the person and the request body."
})

export const ErasePayload = Schema.Struct(personRef).annotations({
  identifier: "ErasePayload",
  description: "DELETE /v1/people/{personId} as a message."
})

/**
 * The payload of each message type. Each type stands for one request of the API, and a message
 * of it is that request: the same checks, answer and idempotency record. A new type is one entry
 * here and one in `deviceMessages` (src/http/DeviceMessages.ts).
 */
export const messagePayloads = {
  enroll: EnrollRequest,
  addTemplates: AddTemplatesPayload,
  consent: ConsentPayload,
  erase: ErasePayload,
  identify: IdentifyRequest,
  admission: AdmissionRequest
} as const

export type MessageType = keyof typeof messagePayloads
export const messageTypes = Object.keys(messagePayloads) as ReadonlyArray<MessageType>

const requestOf: Record<MessageType, string> = {
  enroll: "POST /v1/people",
  addTemplates: "POST /v1/people/{personId}/templates",
  consent: "POST /v1/people/{personId}/consent",
  erase: "DELETE /v1/people/{personId}",
  identify: "POST /v1/identify",
  admission: "POST /v1/admissions"
}

const capitalised = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

// What the OpenAPI document shows for an item: one shape per type. Items are decoded leniently
// (`DeviceMessage`) so that a bad item is answered in its own result instead of failing the batch.
const documentedItem = Schema.Union(
  ...messageTypes.map((type) =>
    Schema.Struct({
      messageId: MessageId,
      type: Schema.Literal(type),
      payload: messagePayloads[type] as Schema.Schema.Any
    }).annotations({
      identifier: `${capitalised(type)}Message`,
      description: `${requestOf[type]} as a batch item.`
    })
  )
)

/** One buffered message of a batch: its id, its type and the request body it stands for. */
export const DeviceMessage = Schema.Struct({
  messageId: MessageId,
  type: BoundedString(100).annotations({ description: `One of ${messageTypes.join(", ")}.` }),
  payload: Schema.Unknown
}).annotations({
  identifier: "DeviceMessage",
  [SchemaAST.SurrogateAnnotationId]: documentedItem.ast
})

const exampleTime = "2024-06-01T18:00:00.000Z"

export const DeviceMessagesRequest = Schema.Struct({
  messages: Schema.Array(DeviceMessage).pipe(Schema.minItems(1)).annotations({
    description: "Applied one after the other, in this order. At most DEVICE_BATCH_MAX_MESSAGES (default 100)."
  })
}).annotations({
  identifier: "DeviceMessagesRequest",
  examples: [{
    messages: [
      {
        messageId: "kiosk-7-000118",
        type: "enroll",
        payload: {
          personId: "6f1c2a4e-2b7d-4c1e-9a55-0d3f1e2b7c11",
          externalRef: "holder-8812",
          consent: {
            purposes: ["venue-admission"],
            noticeVersion: "2024-05",
            jurisdiction: "EU-GDPR",
            method: "kiosk-signature",
            givenAt: exampleTime
          },
          templates: [{ modelId: "test-4d@1", vector: [0.12, -0.4, 0.33, 0.9] }]
        }
      },
      {
        messageId: "kiosk-7-000119",
        type: "erase",
        payload: { personId: "0b7e3c1d-5a2f-4e6b-8c9d-1e2f3a4b5c6d" }
      },
      {
        messageId: "kiosk-7-000120",
        type: "identify",
        payload: {
          eventId: EventId.make("5b0f6f64-3c1e-4a53-9c44-2f1d1e6f7a10"),
          probe: { modelId: "test-4d@1", vector: [0.5, 0.5, 0.5, 0.5] }
        }
      },
      {
        messageId: "gate-north-004512",
        type: "admission",
        payload: {
          nonce: "gate-north-004512",
          eventId: EventId.make("5b0f6f64-3c1e-4a53-9c44-2f1d1e6f7a10"),
          gate: "north",
          direction: "entry",
          ticket: { reference: "TICKET-SECRET-0001" },
          deviceTime: exampleTime,
          offline: true
        }
      }
    ]
  }]
})

export const ProblemDetails = Schema.Struct(
  {
    type: Schema.String,
    title: Schema.String,
    status: Schema.Int,
    detail: Schema.String,
    code: Schema.String.annotations({ description: "The error's name, e.g. PersonErased." })
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
).annotations({
  identifier: "ProblemDetails",
  description: "RFC 9457 problem details, as the message's own request would have been answered."
})

export const MessageResult = Schema.Struct({
  messageId: Schema.String,
  type: Schema.String,
  status: Schema.Int.annotations({
    description: "The HTTP status the message's own request gets (201 enrolled, 410 erased person, ...)."
  }),
  replayed: Schema.Boolean.annotations({
    description: "The answer is the stored outcome of an earlier copy (Idempotent-Replayed of a single request)."
  }),
  retry: Schema.Boolean.annotations({
    description: "Nothing was stored for this message (409, 5xx): send it again, alone or by resending the batch."
  }),
  body: Schema.optional(Schema.Unknown).annotations({
    description: "On success: the body the message's own request answers with (Person, Erasure, Identification, ...)."
  }),
  problem: Schema.optional(ProblemDetails)
}).annotations({ identifier: "MessageResult" })

export const DeviceMessagesResult = Schema.Struct({
  results: Schema.Array(MessageResult).annotations({ description: "One result per message, in the batch's order." })
}).annotations({
  identifier: "DeviceMessagesResult",
  examples: [{
    results: [
      {
        messageId: "kiosk-7-000118",
        type: "enroll",
        status: 201,
        replayed: true,
        retry: false,
        body: { personId: "6f1c2a4e-2b7d-4c1e-9a55-0d3f1e2b7c11", status: "active" }
      },
      {
        messageId: "kiosk-7-000119",
        type: "erase",
        status: 503,
        replayed: false,
        retry: true,
        problem: {
          type: "urn:gatehouse:problem:inbox-unavailable",
          title: "Inbox unavailable",
          status: 503,
          detail: "the database failed; nothing was stored",
          code: "InboxUnavailable"
        }
      },
      {
        messageId: "kiosk-7-000120",
        type: "identify",
        status: 503,
        replayed: false,
        retry: true,
        problem: {
          type: "urn:gatehouse:problem:message-not-attempted",
          title: "Message not attempted",
          status: 503,
          detail: "not attempted: message kiosk-7-000119 before it could not be settled; resend the batch",
          code: "MessageNotAttempted",
          blockedBy: "kiosk-7-000119"
        }
      }
    ]
  }]
})

/** The batch holds more messages than `DEVICE_BATCH_MAX_MESSAGES`; nothing was applied. */
export class BatchTooLarge extends Schema.TaggedError<BatchTooLarge>()(
  "BatchTooLarge",
  { limit: Schema.Int, count: Schema.Int },
  HttpApiSchema.annotations({ status: 413 })
) {
  override get message() {
    return `the batch holds ${this.count} messages, more than the ${this.limit} accepted at once; split it`
  }
}

/** A batch item of a type this service does not know; the other items are applied. */
export class MessageTypeUnknown extends Schema.TaggedError<MessageTypeUnknown>()(
  "MessageTypeUnknown",
  { type: Schema.String, supported: Schema.Array(Schema.String) },
  HttpApiSchema.annotations({ status: 400 })
) {
  override get message() {
    return `unknown message type ${JSON.stringify(this.type)}; supported: ${this.supported.join(", ")}`
  }
}

/**
 * An item that was not attempted because an earlier item of the batch could not be settled (its
 * result says `retry`): later messages may depend on it, so they wait for the batch's resend.
 */
export class MessageNotAttempted extends Schema.TaggedError<MessageNotAttempted>()(
  "MessageNotAttempted",
  { blockedBy: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return `not attempted: message ${this.blockedBy} before it could not be settled; resend the batch`
  }
}

const description = [
  "Uploads messages a device buffered while offline. Each message has its own id and stands for one request of " +
  "the API (enroll, addTemplates, consent, erase, identify); it goes through idempotency on its own, with its " +
  "messageId as its Idempotency-Key, so a message sent in a batch and the same request sent alone with that key " +
  "are one message, answered once and replayed after.",
  "Messages are applied one after the other in the batch's order; each commits on its own (a failed message " +
  "leaves no trace and does not undo the others). The answer is 200 with one result per message, in order: its " +
  "status, its body or problem, whether it was replayed and whether to retry it. A message that cannot be " +
  "settled now (409 another copy running, 5xx: nothing stored) stops the batch there: the messages after it " +
  "answer 503 MessageNotAttempted, since they may depend on it. Resend the whole batch, under the same or a new " +
  "Idempotency-Key: applied messages replay, the others run.",
  "A message id reused with another payload answers 422 IdempotencyKeyReused for that item only; a message id " +
  "repeated within one batch is a redelivery (its later copies replay the first's answer). A malformed item " +
  "(unknown type, invalid payload) is answered 400 in its own result and stores nothing. A malformed envelope is " +
  "a 400 for the whole batch and a batch over DEVICE_BATCH_MAX_MESSAGES is 413 BatchTooLarge; neither applies " +
  "anything. The batch's own Idempotency-Key is recorded with a fingerprint of the whole batch: the same key " +
  "with another batch is 422.",
  "Identify items are messages too: a redelivered identify item replays the first answer (same attemptId, " +
  "scores and candidates, as they were then) and records no second attempt; for a fresh answer send a new " +
  "message id or POST /v1/identify."
].join("\n\n")

/** Batch upload of buffered device messages, one result per message. */
export class DeviceMessagesApi extends HttpApiGroup.make("deviceMessages")
  .add(
    HttpApiEndpoint.post("upload", "/v1/device-messages")
      .setPayload(DeviceMessagesRequest)
      .addSuccess(DeviceMessagesResult)
      .addError(BatchTooLarge)
      .pipe(idempotentEndpoint)
      .annotate(OpenApi.Description, description)
  )
  .middleware(DeviceAuth)
  .annotate(OpenApi.Title, "Device messages")
{}
