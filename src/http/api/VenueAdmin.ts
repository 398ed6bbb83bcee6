import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import {
  DeviceId,
  DeviceKeyId,
  DeviceKeyNotFound,
  DeviceNotFound,
  EventId,
  EventNotFound,
  EventTimesInvalid,
  PersonId,
  PersonNotFound,
  VenueId,
  VenueMismatch,
  VenueNotFound
} from "../../domain/Identity.js"
import { BoundedString } from "../../domain/Text.js"
import { AdminAuth } from "../Security.js"

export const Venue = Schema.Struct({
  venueId: Schema.UUID,
  name: Schema.String,
  createdAt: Schema.Date
}).annotations({ identifier: "Venue" })

export const DeviceKey = Schema.Struct({
  keyId: Schema.UUID,
  hint: Schema.String.annotations({ description: "The first characters of the key, to tell keys apart." }),
  createdAt: Schema.Date,
  revokedAt: Schema.NullOr(Schema.Date)
}).annotations({ identifier: "DeviceKey" })

export const Device = Schema.Struct({
  deviceId: Schema.UUID,
  venueId: Schema.UUID,
  name: Schema.String,
  createdAt: Schema.Date,
  revokedAt: Schema.NullOr(Schema.Date),
  keys: Schema.Array(DeviceKey)
}).annotations({ identifier: "Device" })

export const IssuedKey = Schema.Struct({
  ...DeviceKey.fields,
  apiKey: Schema.String.annotations({
    description: "The device API key. Shown only in this answer; Gatehouse keeps only its hash."
  })
}).annotations({ identifier: "IssuedKey" })

export const CreatedDevice = Schema.Struct({
  device: Device,
  key: IssuedKey
}).annotations({ identifier: "CreatedDevice" })

export const Event = Schema.Struct({
  eventId: Schema.UUID,
  venueId: Schema.UUID,
  name: Schema.String,
  startsAt: Schema.Date,
  endsAt: Schema.Date,
  createdAt: Schema.Date
}).annotations({ identifier: "Event" })

export const Guest = Schema.Struct({
  personId: Schema.UUID,
  addedAt: Schema.Date,
  inGallery: Schema.Boolean.annotations({ description: "Whether identification can find the person now." })
}).annotations({ identifier: "Guest" })

const Name = BoundedString(200)
const Timestamp = Schema.Date.annotations({ description: "ISO 8601 date and time", examples: [new Date(0)] })

const devicePath = Schema.Struct({ deviceId: DeviceId })
const eventPath = Schema.Struct({ eventId: EventId })
const guestPath = Schema.Struct({ eventId: EventId, personId: PersonId })

/** Admin management of venues, devices and their keys, events and event guests. */
export class VenueAdminApi extends HttpApiGroup.make("venueAdmin")
  .add(
    HttpApiEndpoint.post("createVenue", "/v1/admin/venues")
      .setPayload(Schema.Struct({ name: Name }).annotations({ examples: [{ name: "Riverside Arena" }] }))
      .addSuccess(Venue, { status: 201 })
      .annotate(OpenApi.Description, "Create a venue.")
  )
  .add(
    HttpApiEndpoint.get("listVenues", "/v1/admin/venues")
      .addSuccess(Schema.Struct({ venues: Schema.Array(Venue) }))
  )
  .add(
    HttpApiEndpoint.post("createDevice", "/v1/admin/devices")
      .setPayload(
        Schema.Struct({ venueId: VenueId, name: Name }).annotations({
          examples: [{ venueId: VenueId.make("0c9a3d52-7e41-4b8f-a2c6-5d1e9f3b7a20"), name: "north gate 1" }]
        })
      )
      .addSuccess(CreatedDevice, { status: 201 })
      .addError(VenueNotFound)
      .annotate(
        OpenApi.Description,
        "Create a device of a venue and issue its first API key. The key is shown once, in this answer."
      )
  )
  .add(
    HttpApiEndpoint.get("listDevices", "/v1/admin/devices")
      .setUrlParams(Schema.Struct({ venueId: Schema.optional(VenueId) }))
      .addSuccess(Schema.Struct({ devices: Schema.Array(Device) }))
  )
  .add(
    HttpApiEndpoint.get("getDevice", "/v1/admin/devices/:deviceId")
      .setPath(devicePath)
      .addSuccess(Device)
      .addError(DeviceNotFound)
  )
  .add(
    HttpApiEndpoint.post("issueDeviceKey", "/v1/admin/devices/:deviceId/keys")
      .setPath(devicePath)
      .addSuccess(IssuedKey, { status: 201 })
      .addError(DeviceNotFound)
      .annotate(OpenApi.Description, "Issue another key (rotation). Earlier keys keep working until revoked.")
  )
  .add(
    HttpApiEndpoint.del("revokeDeviceKey", "/v1/admin/devices/:deviceId/keys/:keyId")
      .setPath(Schema.Struct({ deviceId: DeviceId, keyId: DeviceKeyId }))
      .addSuccess(DeviceKey)
      .addError(DeviceKeyNotFound)
      .annotate(OpenApi.Description, "Revoke one key of a device at once. Revoking twice changes nothing.")
  )
  .add(
    HttpApiEndpoint.del("revokeDevice", "/v1/admin/devices/:deviceId")
      .setPath(devicePath)
      .addSuccess(Device)
      .addError(DeviceNotFound)
      .annotate(OpenApi.Description, "Revoke a device: none of its keys work any more.")
  )
  .add(
    HttpApiEndpoint.post("createEvent", "/v1/admin/events")
      .setPayload(
        Schema.Struct({ venueId: VenueId, name: Name, startsAt: Timestamp, endsAt: Timestamp }).annotations({
          examples: [{
            venueId: VenueId.make("0c9a3d52-7e41-4b8f-a2c6-5d1e9f3b7a20"),
            name: "Spring concert",
            startsAt: new Date("2024-06-01T17:00:00Z"),
            endsAt: new Date("2024-06-01T23:00:00Z")
          }]
        })
      )
      .addSuccess(Event, { status: 201 })
      .addError(VenueNotFound)
      .addError(EventTimesInvalid)
  )
  .add(
    HttpApiEndpoint.get("listEvents", "/v1/admin/events")
      .setUrlParams(Schema.Struct({ venueId: Schema.optional(VenueId) }))
      .addSuccess(Schema.Struct({ events: Schema.Array(Event) }))
  )
  .add(
    HttpApiEndpoint.get("getEvent", "/v1/admin/events/:eventId")
      .setPath(eventPath)
      .addSuccess(Event)
      .addError(EventNotFound)
  )
  .add(
    HttpApiEndpoint.get("listGuests", "/v1/admin/events/:eventId/guests")
      .setPath(eventPath)
      .addSuccess(Schema.Struct({ guests: Schema.Array(Guest) }))
      .addError(EventNotFound)
  )
  .add(
    HttpApiEndpoint.put("addGuest", "/v1/admin/events/:eventId/guests/:personId")
      .setPath(guestPath)
      .addSuccess(Guest)
      .addError(EventNotFound)
      .addError(PersonNotFound)
      .addError(VenueMismatch)
      .annotate(
        OpenApi.Description,
        "Add a person of the event's venue to its guests, and so to its gallery while their consent is active."
      )
  )
  .add(
    HttpApiEndpoint.del("removeGuest", "/v1/admin/events/:eventId/guests/:personId")
      .setPath(guestPath)
      .addSuccess(Schema.Struct({ eventId: Schema.UUID, personId: Schema.UUID, removed: Schema.Literal(true) }))
      .addError(EventNotFound)
  )
  .middleware(AdminAuth)
  .annotate(OpenApi.Title, "Admin: venues, devices, events")
{}
