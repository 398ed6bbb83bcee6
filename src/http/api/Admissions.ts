import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Decision, Direction, Reason } from "../../domain/CheckIn.js"
import { EventId, EventNotFound } from "../../domain/Identity.js"
import { BoundedString } from "../../domain/Text.js"
import { IdentificationUnavailable, Method, ProbeRejected, ScanNonceReused } from "../../services/Admissions.js"
import { DeviceAuth } from "../DeviceAuth.js"
import { idempotentEndpoint } from "../Idempotency.js"
import { AdminAuth } from "../Security.js"
import { ViewerAuth } from "../ViewerAuth.js"
import { ProbeTemplate } from "./Matching.js"

const exampleEventId = "5b0f6f64-3c1e-4a53-9c44-2f1d1e6f7a10"
const exampleDeviceId = "2c9a4f0e-51d7-4b8e-9d2a-7f3e6b1c0a44"
const examplePersonId = "9a3c2f1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b"
const exampleTicketId = "7d1e0b9a-3f2c-4e6d-8b5a-1c0f9e8d7a6b"

const Nonce = BoundedString(128).annotations({
  description: "The gate's id for this scan, unique per device. A resent or late-uploaded copy of the scan carries " +
    "the same nonce and gets the first outcome, whatever its Idempotency-Key."
})

export const TicketReference = Schema.Struct({
  reference: BoundedString(200).annotations({ description: "What the ticket's QR code carries (its secret)." })
}).annotations({ identifier: "TicketReference" })

const ScanFields = Schema.Struct({
  nonce: Nonce,
  eventId: EventId,
  gate: BoundedString(100).annotations({ description: "Which gate or lane scanned, as the venue names it." }),
  direction: Direction.annotations({ description: "entry, or exit (re-entry needs an exit first)." }),
  probe: Schema.optional(ProbeTemplate.annotations({
    description: "A face template captured at the gate: the person is identified among the event's ticket holders."
  })),
  ticket: Schema.optional(TicketReference.annotations({ description: "A scanned ticket instead of a face." })),
  deviceTime: Schema.Date.annotations({ description: "When the scan happened, by the device's clock (ISO 8601)." }),
  offline: Schema.optionalWith(Schema.Boolean, { default: () => false }).annotations({
    description: "true for a scan made while the gate could not reach the service and uploaded now: it already " +
      "happened, so it is recorded as a granted fact, flagged when the rules would have refused it. Default false."
  })
}).annotations({
  examples: [{
    nonce: "gate-3:000184",
    eventId: EventId.make(exampleEventId),
    gate: "north-3",
    direction: "entry",
    probe: { modelId: "test-4d@1", vector: [0.5, 0.5, 0.5, 0.5] },
    deviceTime: new Date("2024-06-01T19:02:11Z"),
    offline: false
  }, {
    nonce: "gate-3:000185",
    eventId: EventId.make(exampleEventId),
    gate: "north-3",
    direction: "exit",
    ticket: { reference: "q7hk2m9xw3rt5pze" },
    deviceTime: new Date("2024-06-01T21:40:03Z"),
    offline: true
  }]
})

export const AdmissionRequest = ScanFields.pipe(
  Schema.filter((scan) =>
    (scan.probe === undefined) !== (scan.ticket === undefined) ||
    { path: [scan.probe === undefined ? "ticket" : "probe"], message: "send exactly one of probe and ticket" }
  )
).annotations({
  identifier: "AdmissionRequest",
  description: "One gate scan: exactly one of probe and ticket."
})

const admissionFields = {
  admissionId: Schema.Number.annotations({ description: "Position in the event's decision order." }),
  deviceId: Schema.UUID,
  nonce: Schema.String,
  eventId: Schema.UUID,
  gate: Schema.String,
  direction: Direction,
  method: Method.annotations({ description: "How the scan named the ticket: a face probe or a ticket reference." }),
  ticketId: Schema.NullOr(Schema.UUID).annotations({ description: "The synced ticket the scan applied to." }),
  personId: Schema.NullOr(Schema.UUID).annotations({ description: "Who the probe identified, if anyone." }),
  score: Schema.NullOr(Schema.Number).annotations({ description: "The identified person's score." }),
  threshold: Schema.NullOr(Schema.Number).annotations({ description: "The model's threshold used for the probe." }),
  modelId: Schema.NullOr(Schema.String),
  decision: Decision.annotations({ description: "Whether the gate opens. An offline fact is always granted." }),
  reason: Schema.NullOr(Reason).annotations({
    description: "Why it was denied: no_match (nobody in the event's gallery), no_ticket (identified, no valid " +
      "ticket), unknown_ticket, not_in_event, ticket_cancelled, already_admitted."
  }),
  flagged: Schema.NullOr(Reason).annotations({
    description: "On an offline fact the rules would have refused (a double use): the reason. It is recorded, " +
      "not rejected, and listed among the event's conflicts."
  }),
  offline: Schema.Boolean,
  deviceTime: Schema.Date,
  serverTime: Schema.Date.annotations({ description: "When the service decided or recorded the scan." })
}

const admissionExample = {
  admissionId: 184,
  deviceId: exampleDeviceId,
  nonce: "gate-3:000184",
  eventId: exampleEventId,
  gate: "north-3",
  direction: "entry" as const,
  method: "probe" as const,
  ticketId: exampleTicketId,
  personId: examplePersonId,
  score: 0.97,
  threshold: 0.9,
  modelId: "test-4d@1",
  decision: "granted" as const,
  reason: null,
  flagged: null,
  offline: false,
  deviceTime: new Date("2024-06-01T19:02:11Z"),
  serverTime: new Date("2024-06-01T19:02:11.204Z")
}

export const AdmissionRecord = Schema.Struct(admissionFields).annotations({
  identifier: "AdmissionRecord",
  description: "One scan as recorded: its decision, or the offline fact and its flag. Never the probe.",
  examples: [admissionExample]
})

export const AdmissionAnswer = Schema.Struct({
  ...admissionFields,
  replayed: Schema.Boolean.annotations({
    description: "true when the nonce had been decided by an earlier request: this is that first outcome, " +
      "and nothing changed."
  })
}).annotations({
  identifier: "AdmissionAnswer",
  examples: [{ ...admissionExample, replayed: false }, {
    ...admissionExample,
    admissionId: 191,
    nonce: "gate-3:000191",
    method: "ticket",
    personId: null,
    score: null,
    threshold: null,
    modelId: null,
    decision: "denied",
    reason: "already_admitted",
    replayed: false
  }]
})

export const AdmissionConflict = Schema.Struct({
  conflictId: Schema.Number,
  admissionId: Schema.Number.annotations({ description: "The flagged offline fact." }),
  ticketId: Schema.NullOr(Schema.UUID),
  reason: Reason,
  earlierAdmissionId: Schema.NullOr(Schema.Number).annotations({
    description: "For already_admitted: the granted entry this one doubles."
  }),
  detectedAt: Schema.Date
}).annotations({ identifier: "AdmissionConflict" })

export const AdmissionPage = Schema.Struct({
  eventId: Schema.UUID,
  admissions: Schema.Array(AdmissionRecord),
  conflicts: Schema.Array(AdmissionConflict).annotations({
    description: "The flagged facts among the admissions of this page."
  }),
  next: Schema.NullOr(Schema.Number).annotations({ description: "Pass as `after` for the next page; null at the end." })
}).annotations({
  identifier: "AdmissionPage",
  examples: [{
    eventId: exampleEventId,
    admissions: [{ ...admissionExample, offline: true, flagged: "already_admitted" }],
    conflicts: [{
      conflictId: 3,
      admissionId: 184,
      ticketId: exampleTicketId,
      reason: "already_admitted",
      earlierAdmissionId: 120,
      detectedAt: new Date("2024-06-01T19:40:00Z")
    }],
    next: null
  }]
})

export const CheckInListView = Schema.Struct({
  listId: Schema.UUID,
  eventId: Schema.UUID,
  allowReentry: Schema.Boolean.annotations({
    description: "Whether a ticket may enter again after an exit. Without it a ticket enters once."
  }),
  updatedAt: Schema.Date
}).annotations({
  identifier: "CheckInList",
  examples: [{
    listId: "0b8e2c7d-6a5f-4e3d-9c1b-2a3f4e5d6c7b",
    eventId: exampleEventId,
    allowReentry: true,
    updatedAt: new Date("2024-06-01T17:00:00Z")
  }]
})

export const CheckInListRules = Schema.Struct({ allowReentry: Schema.Boolean }).annotations({
  identifier: "CheckInListRules",
  examples: [{ allowReentry: true }]
})

/** Rejections of a scan that are its fault: stored and replayed by idempotency. */
export const AdmitRejection = Schema.Union(EventNotFound, ScanNonceReused, ProbeRejected)

const eventPath = Schema.Struct({ eventId: EventId })

/** Gate scans by the devices of a venue. */
export class AdmissionsApi extends HttpApiGroup.make("admissions")
  .add(
    HttpApiEndpoint.post("admit", "/v1/admissions")
      .setPayload(AdmissionRequest)
      .addSuccess(AdmissionAnswer)
      .addError(EventNotFound)
      .addError(ScanNonceReused)
      .addError(ProbeRejected)
      .addError(IdentificationUnavailable)
      .pipe(idempotentEndpoint)
      .annotate(
        OpenApi.Description,
        "Decide one gate scan of an event of the device's venue, from the tickets synced so far: the " +
          "ticketing provider is never waited for. The probe is identified among the event's ticket holders (or " +
          "the ticket reference looked up) and the event's check-in list applies: a ticket enters once, again only " +
          "after an exit when the list allows re-entry. The answer is the admission record; a denial carries its " +
          "reason. The nonce makes a resent scan return its first outcome; the same nonce for another scan is " +
          "422 ScanNonceReused. An offline scan is recorded as a fact, flagged when it doubles an entry. Events of " +
          "other venues are not found. The probe is never stored."
      )
  )
  .middleware(DeviceAuth)
  .annotate(OpenApi.Title, "Admissions")
{}

/** An event's admissions, for devices of the event's venue and for the admin. */
export class AdmissionViewsApi extends HttpApiGroup.make("admissionViews")
  .add(
    HttpApiEndpoint.get("listAdmissions", "/v1/events/:eventId/admissions")
      .setPath(eventPath)
      .setUrlParams(Schema.Struct({
        after: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())).annotations({
          description: "Return admissions after this admissionId (the `next` of the previous answer)."
        }),
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000))).annotations({
          description: "Admissions per answer, 100 unless told otherwise."
        }),
        flagged: Schema.optional(Schema.BooleanFromString).annotations({
          description: "true: only the offline facts flagged as conflicts."
        })
      }))
      .addSuccess(AdmissionPage)
      .addError(EventNotFound)
      .annotate(
        OpenApi.Description,
        "The event's admissions in decision order, with the conflicts (flagged offline facts) among them."
      )
  )
  .middleware(ViewerAuth)
  .annotate(OpenApi.Title, "Admissions")
{}

/** Admin: the rules of an event's check-in list. */
export class AdmissionAdminApi extends HttpApiGroup.make("admissionAdmin")
  .add(
    HttpApiEndpoint.get("getCheckInList", "/v1/admin/events/:eventId/check-in-list")
      .setPath(eventPath)
      .addSuccess(CheckInListView)
      .addError(EventNotFound)
      .annotate(OpenApi.Description, "The event's check-in list (no re-entry until configured otherwise).")
  )
  .add(
    HttpApiEndpoint.put("configureCheckInList", "/v1/admin/events/:eventId/check-in-list")
      .setPath(eventPath)
      .setPayload(CheckInListRules)
      .addSuccess(CheckInListView)
      .addError(EventNotFound)
      .annotate(
        OpenApi.Description,
        "Set the rules of the event's check-in list. Applies to scans decided from now on; past admissions stay."
      )
  )
  .middleware(AdminAuth)
  .annotate(OpenApi.Title, "Admin: admission")
{}
