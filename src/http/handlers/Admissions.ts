import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { EventNotFound } from "../../domain/Identity.js"
import { Admissions } from "../../services/Admissions.js"
import { Venues } from "../../services/Venues.js"
import { admissionMessages } from "../AdmissionMessages.js"
import { GatehouseApi } from "../Api.js"
import { CurrentDevice } from "../DeviceAuth.js"
import { idempotent } from "../Idempotency.js"
import { orDieSql } from "../Sql.js"
import { canSee, CurrentViewer } from "../ViewerAuth.js"

export const AdmissionsHandlers = HttpApiBuilder.group(
  GatehouseApi,
  "admissions",
  (handlers) =>
    Effect.gen(function*() {
      const messages = admissionMessages(yield* Admissions)

      return handlers.handle("admit", ({ headers, payload }) =>
        Effect.gen(function*() {
          const device = yield* CurrentDevice
          const message = yield* messages.admit(device, payload)
          return yield* idempotent(
            { deviceId: device.deviceId, key: headers["idempotency-key"], payload, ...message.options },
            message.run
          )
        }))
    })
)

export const AdmissionViewsHandlers = HttpApiBuilder.group(
  GatehouseApi,
  "admissionViews",
  (handlers) =>
    Effect.gen(function*() {
      const admissions = yield* Admissions
      const venues = yield* Venues

      return handlers.handle("listAdmissions", ({ path, urlParams }) =>
        Effect.gen(function*() {
          const viewer = yield* CurrentViewer
          const event = yield* orDieSql(venues.getEvent(path.eventId))
          if (!canSee(viewer, event.venueId)) return yield* new EventNotFound({ id: path.eventId })
          const page = yield* orDieSql(admissions.list(path.eventId, {
            after: urlParams.after ?? 0,
            limit: urlParams.limit ?? 100,
            flaggedOnly: urlParams.flagged ?? false
          }))
          return { eventId: path.eventId, ...page }
        }))
    })
)

export const AdmissionAdminHandlers = HttpApiBuilder.group(
  GatehouseApi,
  "admissionAdmin",
  (handlers) =>
    Effect.gen(function*() {
      const admissions = yield* Admissions
      const venues = yield* Venues

      return handlers
        .handle(
          "getCheckInList",
          ({ path }) => orDieSql(Effect.zipRight(venues.getEvent(path.eventId), admissions.checkInList(path.eventId)))
        )
        .handle(
          "configureCheckInList",
          ({ path, payload }) =>
            orDieSql(Effect.zipRight(venues.getEvent(path.eventId), admissions.configureList(path.eventId, payload)))
        )
    })
)
