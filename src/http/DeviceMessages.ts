import { Effect, Schema } from "effect"
import { derivePersonId, EventNotFound } from "../domain/Identity.js"
import type { Admissions } from "../services/Admissions.js"
import { auditEntry } from "../services/AttemptLog.js"
import type { Audit } from "../services/Audit.js"
import type { Enrollment } from "../services/Enrollment.js"
import { type Matching, ProbeInvalid } from "../services/Matching.js"
import { admissionMessages } from "./AdmissionMessages.js"
import { messagePayloads, type MessageType } from "./api/DeviceMessages.js"
import { Identification } from "./api/Matching.js"
import { personMessages } from "./PersonMessages.js"

interface Device {
  readonly deviceId: string
  readonly venueId: string
}

/**
 * A device message ready for idempotency: the request it stands for (`method`, `url` and `body`
 * make its fingerprint, as for the request sent alone), what idempotency stores, and the effect.
 */
export interface ReadyMessage<A, I, E, F, FI> {
  readonly method: string
  readonly url: string
  readonly body: unknown
  readonly options: {
    readonly success: Schema.Schema<A, I>
    readonly status?: number
    readonly rejections?: Schema.Schema<F, FI>
    readonly subject?: string
  }
  readonly run: Effect.Effect<A, E>
}

/**
 * How one message type becomes a ready message, from its decoded payload. Its failures are the
 * checks that need no stored state (a bad vector, an erased person): they store nothing.
 */
type Prepare<K extends MessageType> = (
  device: Device,
  messageId: string,
  payload: Schema.Schema.Type<(typeof messagePayloads)[K]>
) => Effect.Effect<ReadyMessage<any, any, any, any, any>, unknown>

/** Rejections of an identify message that are its fault: stored and replayed. */
export const IdentifyRejection = Schema.Union(EventNotFound, ProbeInvalid)

/**
 * The message types of `POST /v1/device-messages`, each the same message as the request it stands
 * for. Person messages are `personMessages`, shared with the people endpoints. An identify message
 * records its attempt in the audit log in the transaction that stores its answer, so a
 * redelivered copy replays the answer and records nothing more.
 */
export const deviceMessages = (services: {
  readonly enrollment: Enrollment["Type"]
  readonly matching: Matching["Type"]
  readonly audit: Audit["Type"]
  readonly admissions: Admissions["Type"]
}): { readonly [K in MessageType]: Prepare<K> } => {
  const people = personMessages(services.enrollment)
  const gates = admissionMessages(services.admissions)
  const { audit, matching } = services

  return {
    enroll: (device, messageId, payload) =>
      Effect.map(
        people.enroll(device, payload.personId ?? derivePersonId(device.deviceId, messageId), payload),
        (message) => ({ ...message, body: payload })
      ),

    addTemplates: (device, _, { personId, ...body }) =>
      Effect.map(people.addTemplates(device, personId, body), (message) => ({ ...message, body })),

    consent: (device, _, { personId, ...body }) =>
      Effect.map(people.recordConsent(device, personId, body), (message) => ({ ...message, body })),

    erase: (device, _, { personId }) => Effect.succeed({ ...people.erase(device, personId), body: null }),

    identify: (device, _, payload) =>
      Effect.as(matching.checkProbe(payload.probe), {
        method: "POST",
        url: "/v1/identify",
        body: payload,
        options: { success: Identification, rejections: IdentifyRejection },
        run: Effect.flatMap(
          matching.search(device, payload),
          ({ attempt, identification }) =>
            Effect.as(
              Effect.zipRight(
                audit.record(auditEntry(attempt)),
                services.enrollment.recordInteraction(
                  attempt.decision === "match" && attempt.personId !== undefined ? [attempt.personId] : []
                )
              ),
              identification
            )
        )
      }),

    admission: (device, _, payload) =>
      Effect.map(gates.admit(device, payload), (message) => ({ ...message, body: payload }))
  }
}

/** Decodes a message's payload with its type's schema. */
export const decodePayload = <K extends MessageType>(type: K, payload: unknown) =>
  Schema.decodeUnknown(
    messagePayloads[type] as unknown as Schema.Schema<Schema.Schema.Type<(typeof messagePayloads)[K]>>
  )(
    payload,
    { errors: "all" }
  )
