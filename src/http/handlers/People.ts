import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { derivePersonId } from "../../domain/Identity.js"
import { Enrollment } from "../../services/Enrollment.js"
import { GatehouseApi } from "../Api.js"
import { CurrentDevice } from "../DeviceAuth.js"
import { idempotent } from "../Idempotency.js"
import { personMessages } from "../PersonMessages.js"
import { orDieSql } from "../Sql.js"

export const PeopleHandlers = HttpApiBuilder.group(GatehouseApi, "people", (handlers) =>
  Effect.gen(function*() {
    const enrollment = yield* Enrollment
    const messages = personMessages(enrollment)

    return handlers
      .handle("enroll", ({ headers, payload }) =>
        Effect.gen(function*() {
          const device = yield* CurrentDevice
          const key = headers["idempotency-key"]
          const message = yield* messages.enroll(
            device,
            payload.personId ?? derivePersonId(device.deviceId, key),
            payload
          )
          return yield* idempotent({ deviceId: device.deviceId, key, payload, ...message.options }, message.run)
        }))
      .handle("addTemplates", ({ headers, path, payload }) =>
        Effect.gen(function*() {
          const device = yield* CurrentDevice
          const message = yield* messages.addTemplates(device, path.personId, payload)
          return yield* idempotent(
            { deviceId: device.deviceId, key: headers["idempotency-key"], payload, ...message.options },
            message.run
          )
        }))
      .handle("recordConsent", ({ headers, path, payload }) =>
        Effect.gen(function*() {
          const device = yield* CurrentDevice
          const message = yield* messages.recordConsent(device, path.personId, payload)
          return yield* idempotent(
            { deviceId: device.deviceId, key: headers["idempotency-key"], payload, ...message.options },
            message.run
          )
        }))
      .handle("get", ({ path }) =>
        Effect.flatMap(CurrentDevice, (device) => orDieSql(enrollment.get(device, path.personId))))
      .handle("erase", ({ headers, path }) =>
        Effect.gen(function*() {
          const device = yield* CurrentDevice
          const message = messages.erase(device, path.personId)
          return yield* idempotent(
            { deviceId: device.deviceId, key: headers["idempotency-key"], payload: null, ...message.options },
            message.run
          )
        }))
  }))
