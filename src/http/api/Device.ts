import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { EventId, EventNotFound } from "../../domain/Identity.js"
import { DeviceAuth } from "../DeviceAuth.js"
import { Event } from "./VenueAdmin.js"

/** What a device may read about itself and its venue. */
export class DeviceApi extends HttpApiGroup.make("device")
  .add(
    HttpApiEndpoint.get("whoami", "/v1/device")
      .addSuccess(Schema.Struct({ deviceId: Schema.UUID, venueId: Schema.UUID }))
      .annotate(OpenApi.Description, "The device and venue the bearer key acts for.")
  )
  .add(
    HttpApiEndpoint.get("listEvents", "/v1/events")
      .addSuccess(Schema.Struct({ events: Schema.Array(Event) }))
      .annotate(OpenApi.Description, "Events of the device's venue.")
  )
  .add(
    HttpApiEndpoint.get("getEvent", "/v1/events/:eventId")
      .setPath(Schema.Struct({ eventId: EventId }))
      .addSuccess(Event)
      .addError(EventNotFound)
      .annotate(OpenApi.Description, "One event of the device's venue; events of other venues are not found.")
  )
  .middleware(DeviceAuth)
  .annotate(OpenApi.Title, "Device")
{}
