import type { DeviceRequest } from "./Client.js"

/**
 * The requests simulated devices and the operator send, in one place: the shapes follow the
 * service's OpenAPI document (`/openapi.json`), so a change of contract is a change here.
 */

export const modelId = "arcface-r100@1"
export const modelDimension = 512
/** The service's default acceptance threshold for `modelId` (src/domain/Models.ts). */
export const modelThreshold = 0.4

export const admin = {
  createVenue: (adminKey: string, name: string): DeviceRequest => ({
    method: "POST",
    path: "/v1/admin/venues",
    body: { name },
    bearer: adminKey,
    label: "create venue"
  }),
  createDevice: (adminKey: string, venueId: string, name: string): DeviceRequest => ({
    method: "POST",
    path: "/v1/admin/devices",
    body: { venueId, name },
    bearer: adminKey,
    label: `create device ${name}`
  }),
  createEvent: (adminKey: string, venueId: string, name: string, startsAt: Date, endsAt: Date): DeviceRequest => ({
    method: "POST",
    path: "/v1/admin/events",
    body: { venueId, name, startsAt: startsAt.toISOString(), endsAt: endsAt.toISOString() },
    bearer: adminKey,
    label: "create event"
  }),
  mapEvent: (adminKey: string, eventId: string, providerEvent: string): DeviceRequest => ({
    method: "PUT",
    path: `/v1/admin/events/${eventId}/provider`,
    body: { providerEvent },
    bearer: adminKey,
    label: "map the event to the provider's"
  }),
  checkInList: (adminKey: string, eventId: string, allowReentry: boolean): DeviceRequest => ({
    method: "PUT",
    path: `/v1/admin/events/${eventId}/check-in-list`,
    body: { allowReentry },
    bearer: adminKey,
    label: "configure the check-in list"
  }),
  tickets: (adminKey: string, eventId: string): DeviceRequest => ({
    method: "GET",
    path: `/v1/events/${eventId}/tickets?limit=10000`,
    bearer: adminKey,
    label: "list tickets"
  })
}

export interface Enrollment {
  readonly personId: string
  readonly externalRef: string | undefined
  readonly vectors: ReadonlyArray<ReadonlyArray<number>>
  readonly givenAt: Date
}

export const enrollmentBody = (e: Enrollment) => ({
  personId: e.personId,
  ...(e.externalRef === undefined ? {} : { externalRef: e.externalRef }),
  consent: {
    purposes: ["venue-admission"],
    noticeVersion: "demo-1",
    jurisdiction: "EU-GDPR",
    method: "kiosk-signature",
    givenAt: e.givenAt.toISOString()
  },
  templates: e.vectors.map((vector) => ({ modelId, vector }))
})

export interface Scan {
  readonly nonce: string
  readonly eventId: string
  readonly gate: string
  readonly direction: "entry" | "exit"
  readonly probe: ReadonlyArray<number>
  readonly deviceTime: Date
  readonly offline: boolean
}

export const scanBody = (s: Scan) => ({
  nonce: s.nonce,
  eventId: s.eventId,
  gate: s.gate,
  direction: s.direction,
  probe: { modelId, vector: s.probe },
  deviceTime: s.deviceTime.toISOString(),
  offline: s.offline
})

export const device = {
  enroll: (key: string, e: Enrollment, idempotencyKey: string): DeviceRequest => ({
    method: "POST",
    path: "/v1/people",
    body: enrollmentBody(e),
    bearer: key,
    idempotencyKey,
    label: `enroll ${e.personId}`,
    faults: true
  }),
  erase: (key: string, personId: string, idempotencyKey: string): DeviceRequest => ({
    method: "DELETE",
    path: `/v1/people/${personId}`,
    bearer: key,
    idempotencyKey,
    label: `erase ${personId}`,
    faults: true
  }),
  admit: (key: string, s: Scan, idempotencyKey: string): DeviceRequest => ({
    method: "POST",
    path: "/v1/admissions",
    body: scanBody(s),
    bearer: key,
    idempotencyKey,
    label: `scan ${s.nonce}`,
    faults: true
  }),
  /** A batch of buffered messages, each with its own id; the answer has one result per item. */
  messages: (
    key: string,
    items: ReadonlyArray<{ readonly id: string; readonly type: string; readonly body: unknown }>,
    idempotencyKey: string
  ): DeviceRequest => ({
    method: "POST",
    path: "/v1/device-messages",
    body: { messages: items.map((i) => ({ messageId: i.id, type: i.type, payload: i.body })) },
    bearer: key,
    idempotencyKey,
    label: `batch of ${items.length}`,
    faults: true
  }),
  tickets: (key: string, eventId: string): DeviceRequest => ({
    method: "GET",
    path: `/v1/events/${eventId}/tickets?limit=10000`,
    bearer: key,
    label: "list tickets",
    faults: true
  }),
  /** A query: no Idempotency-Key, each call is its own attempt. */
  verify: (key: string, personId: string, vector: ReadonlyArray<number>): DeviceRequest => ({
    method: "POST",
    path: "/v1/verify",
    body: { personId, probe: { modelId, vector } },
    bearer: key,
    label: `verify ${personId}`,
    faults: true
  })
}
