import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Matching } from "../../services/Matching.js"
import { GatehouseApi } from "../Api.js"
import { CurrentDevice } from "../DeviceAuth.js"

export const MatchingHandlers = HttpApiBuilder.group(GatehouseApi, "matching", (handlers) =>
  Effect.gen(function*() {
    const matching = yield* Matching

    return handlers
      .handle("identify", ({ payload }) =>
        Effect.flatMap(CurrentDevice, (device) =>
          matching.identify(device, { eventId: payload.eventId, probe: payload.probe, topK: payload.topK })))
      .handle("verify", ({ payload }) =>
        Effect.flatMap(CurrentDevice, (device) =>
          matching.verify(device, { personId: payload.personId, probe: payload.probe })))
  }))
