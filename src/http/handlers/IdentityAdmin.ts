import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { Audit } from "../../services/Audit.js"
import { Enrollment } from "../../services/Enrollment.js"
import { GatehouseApi } from "../Api.js"
import { orDieSql } from "../Sql.js"

const admin = { venueId: undefined, deviceId: undefined }

export const IdentityAdminHandlers = HttpApiBuilder.group(
  GatehouseApi,
  "identityAdmin",
  (handlers) =>
    Effect.gen(function*() {
      const audit = yield* Audit
      const enrollment = yield* Enrollment

      return handlers
        .handle("audit", ({ urlParams }) =>
          Effect.gen(function*() {
            const limit = urlParams.limit ?? 100
            const records = yield* orDieSql(audit.list({ ...urlParams, limit }))
            return { records, next: records.length === limit ? records[records.length - 1]!.id : null }
          }))
        .handle("getPerson", ({ path }) => orDieSql(enrollment.get(admin, path.personId)))
        .handle("erasePerson", ({ path }) => orDieSql(enrollment.erase(admin, path.personId)))
    })
)
