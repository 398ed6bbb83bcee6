import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Venues } from "../../services/Venues.js"
import { GatehouseApi } from "../Api.js"
import { CurrentDevice } from "../DeviceAuth.js"
import { orDieSql } from "../Sql.js"

export const DeviceHandlers = HttpApiBuilder.group(GatehouseApi, "device", (handlers) =>
  Effect.gen(function*() {
    const venues = yield* Venues

    return handlers
      .handle("whoami", () => CurrentDevice)
      .handle("listEvents", () =>
        Effect.flatMap(CurrentDevice, (device) =>
          orDieSql(Effect.map(venues.listEvents(device.venueId), (events) => ({ events })))))
      .handle("getEvent", ({ path }) =>
        Effect.flatMap(CurrentDevice, (device) =>
          orDieSql(venues.getEvent(path.eventId, device.venueId))))
  }))
