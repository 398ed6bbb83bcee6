import { HttpApiBuilder } from "@effect/platform"
import { Effect, Redacted } from "effect"
import { Devices, type IssuedKey } from "../../services/Devices.js"
import { Venues } from "../../services/Venues.js"
import { GatehouseApi } from "../Api.js"
import { orDieSql } from "../Sql.js"

const shown = ({ apiKey, ...key }: IssuedKey) => ({ ...key, apiKey: Redacted.value(apiKey) })

export const VenueAdminHandlers = HttpApiBuilder.group(
  GatehouseApi,
  "venueAdmin",
  (handlers) =>
    Effect.gen(function*() {
      const venues = yield* Venues
      const devices = yield* Devices

      return handlers
        .handle("createVenue", ({ payload }) => orDieSql(venues.createVenue(payload.name)))
        .handle("listVenues", () => orDieSql(Effect.map(venues.listVenues, (all) => ({ venues: all }))))
        .handle("createDevice", ({ payload }) =>
          orDieSql(
            Effect.map(
              devices.create(payload.venueId, payload.name),
              ({ device, key }) => ({ device, key: shown(key) })
            )
          ))
        .handle(
          "listDevices",
          ({ urlParams }) => orDieSql(Effect.map(devices.list(urlParams.venueId), (all) => ({ devices: all })))
        )
        .handle("getDevice", ({ path }) => orDieSql(devices.get(path.deviceId)))
        .handle("issueDeviceKey", ({ path }) => orDieSql(Effect.map(devices.issueKey(path.deviceId), shown)))
        .handle("revokeDeviceKey", ({ path }) => orDieSql(devices.revokeKey(path.deviceId, path.keyId)))
        .handle("revokeDevice", ({ path }) => orDieSql(devices.revoke(path.deviceId)))
        .handle("createEvent", ({ payload }) => orDieSql(venues.createEvent(payload)))
        .handle(
          "listEvents",
          ({ urlParams }) => orDieSql(Effect.map(venues.listEvents(urlParams.venueId), (all) => ({ events: all })))
        )
        .handle("getEvent", ({ path }) => orDieSql(venues.getEvent(path.eventId)))
        .handle(
          "listGuests",
          ({ path }) => orDieSql(Effect.map(venues.listGuests(path.eventId), (all) => ({ guests: all })))
        )
        .handle("addGuest", ({ path }) => orDieSql(venues.addGuest(path.eventId, path.personId)))
        .handle("removeGuest", ({ path }) =>
          orDieSql(
            Effect.as(venues.removeGuest(path.eventId, path.personId), {
              eventId: path.eventId,
              personId: path.personId,
              removed: true as const
            })
          ))
    })
)
