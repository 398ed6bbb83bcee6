import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import * as Crypto from "node:crypto"

/** Ids of the identity component: UUIDs, chosen by the server except person ids (see enrollment). */
export const VenueId = Schema.UUID.pipe(Schema.brand("VenueId"))
export type VenueId = typeof VenueId.Type
export const DeviceId = Schema.UUID.pipe(Schema.brand("DeviceId"))
export type DeviceId = typeof DeviceId.Type
export const DeviceKeyId = Schema.UUID.pipe(Schema.brand("DeviceKeyId"))
export type DeviceKeyId = typeof DeviceKeyId.Type
export const EventId = Schema.UUID.pipe(Schema.brand("EventId"))
export type EventId = typeof EventId.Type
export const PersonId = Schema.UUID.pipe(Schema.brand("PersonId"))
export type PersonId = typeof PersonId.Type
export const TemplateId = Schema.UUID.pipe(Schema.brand("TemplateId"))
export type TemplateId = typeof TemplateId.Type

/** Unknown venue. */
export class VenueNotFound extends Schema.TaggedError<VenueNotFound>()(
  "VenueNotFound",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `venue ${this.id} was not found`
  }
}

/** Unknown or revoked device. */
export class DeviceNotFound extends Schema.TaggedError<DeviceNotFound>()(
  "DeviceNotFound",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `device ${this.id} was not found`
  }
}

/** Unknown key of this device. */
export class DeviceKeyNotFound extends Schema.TaggedError<DeviceKeyNotFound>()(
  "DeviceKeyNotFound",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `device key ${this.id} was not found`
  }
}

/** Unknown event, or one of another venue than the caller's. */
export class EventNotFound extends Schema.TaggedError<EventNotFound>()(
  "EventNotFound",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `event ${this.id} was not found`
  }
}

/** Unknown person, or one of another venue than the caller's (existence is not disclosed). */
export class PersonNotFound extends Schema.TaggedError<PersonNotFound>()(
  "PersonNotFound",
  { id: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message() {
    return `person ${this.id} was not found`
  }
}

/** The person was erased: nothing about them is kept, and they cannot be enrolled again under this id. */
export class PersonErased extends Schema.TaggedError<PersonErased>()(
  "PersonErased",
  { personId: Schema.String, erasedAt: Schema.Date },
  HttpApiSchema.annotations({ status: 410 })
) {
  override get message() {
    return `person ${this.personId} was erased; enroll them under a new person id if they consent again`
  }
}

/** The person id is taken by someone this caller cannot see: choose another id. */
export class PersonIdUnavailable extends Schema.TaggedError<PersonIdUnavailable>()(
  "PersonIdUnavailable",
  { personId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `person id ${this.personId} is not available; choose another`
  }
}

/** The person exists with another enrollment (other templates, consent or reference). */
export class PersonAlreadyEnrolled extends Schema.TaggedError<PersonAlreadyEnrolled>()(
  "PersonAlreadyEnrolled",
  { personId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `person ${this.personId} is already enrolled; add templates or record consent on it instead`
  }
}

/** Another person of the venue carries this external reference. */
export class ExternalRefTaken extends Schema.TaggedError<ExternalRefTaken>()(
  "ExternalRefTaken",
  { externalRef: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return "another person of this venue carries this external reference"
  }
}

/** A template vector that cannot be used: `reason` says which rule it breaks. */
export class TemplateInvalid extends Schema.TaggedError<TemplateInvalid>()(
  "TemplateInvalid",
  {
    index: Schema.Number,
    reason: Schema.Literal("unknown-model", "empty", "wrong-dimension", "not-finite", "zero"),
    detail: Schema.String
  },
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return `templates[${this.index}]: ${this.detail}`
  }
}

/** A person may hold at most `limit` templates. */
export class TemplateLimitReached extends Schema.TaggedError<TemplateLimitReached>()(
  "TemplateLimitReached",
  { personId: Schema.String, limit: Schema.Number },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `person ${this.personId} already holds the maximum of ${this.limit} templates`
  }
}

/** Templates may be added only while consent is active. */
export class ConsentNotActive extends Schema.TaggedError<ConsentNotActive>()(
  "ConsentNotActive",
  { personId: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {
  override get message() {
    return `person ${this.personId} has no active consent; record consent first`
  }
}

/** The person belongs to another venue than the event. */
export class VenueMismatch extends Schema.TaggedError<VenueMismatch>()(
  "VenueMismatch",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return this.detail
  }
}

/** An event must end after it starts. */
export class EventTimesInvalid extends Schema.TaggedError<EventTimesInvalid>()(
  "EventTimesInvalid",
  {},
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return "endsAt must be after startsAt"
  }
}

/**
 * The person id of an enrollment that names none: derived from the device and its message id
 * (Idempotency-Key or batch message id), so every copy of that message enrolls the same person,
 * even one arriving after the idempotency record expired. A UUID of version 8 (RFC 9562).
 */
export const derivePersonId = (deviceId: string, messageId: string): string => {
  const digest = Crypto.createHash("sha256").update(`gatehouse:person:${deviceId}:${messageId}`, "utf8").digest()
  digest[6] = (digest[6]! & 0x0f) | 0x80
  digest[8] = (digest[8]! & 0x3f) | 0x80
  const hex = digest.subarray(0, 16).toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
