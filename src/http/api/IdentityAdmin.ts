import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { PersonErased, PersonId, PersonNotFound } from "../../domain/Identity.js"
import { BoundedString } from "../../domain/Text.js"
import { AdminAuth } from "../Security.js"
import { Erasure, Person } from "./People.js"

export const AuditRecord = Schema.Struct({
  id: Schema.Number,
  at: Schema.Date,
  action: Schema.String,
  venueId: Schema.NullOr(Schema.String),
  deviceId: Schema.NullOr(Schema.String),
  personId: Schema.NullOr(Schema.String),
  eventId: Schema.NullOr(Schema.String),
  details: Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({
    description: "Ids, scores, thresholds and model ids; never template vectors."
  })
}).annotations({ identifier: "AuditRecord" })

const personPath = Schema.Struct({ personId: PersonId })

/** Admin reading of the audit log, and people of every venue (subject access, erasure requests). */
export class IdentityAdminApi extends HttpApiGroup.make("identityAdmin")
  .add(
    HttpApiEndpoint.get("audit", "/v1/admin/audit")
      .setUrlParams(Schema.Struct({
        venueId: Schema.optional(Schema.UUID),
        personId: Schema.optional(Schema.UUID),
        eventId: Schema.optional(Schema.UUID),
        action: Schema.optional(BoundedString(100)),
        after: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.nonNegative())).annotations({
          description: "Only records with a larger id: pass the last id of a page to get the next."
        }),
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000))).annotations({
          description: "Records per page, 1 to 1000; default 100."
        })
      }))
      .addSuccess(Schema.Struct({ records: Schema.Array(AuditRecord), next: Schema.NullOr(Schema.Number) }))
      .annotate(
        OpenApi.Description,
        "The append-only audit log, oldest first: enrollments, consent changes, erasures, identification " +
          "decisions and admissions, with ids, scores, thresholds and model ids."
      )
  )
  .add(
    HttpApiEndpoint.get("getPerson", "/v1/admin/people/:personId")
      .setPath(personPath)
      .addSuccess(Person)
      .addError(PersonNotFound)
      .addError(PersonErased)
  )
  .add(
    HttpApiEndpoint.del("erasePerson", "/v1/admin/people/:personId")
      .setPath(personPath)
      .addSuccess(Erasure)
      .addError(PersonNotFound)
      .annotate(OpenApi.Description, "Erase a person of any venue (an erasure request received by the operator).")
  )
  .middleware(AdminAuth)
  .annotate(OpenApi.Title, "Admin: audit and people")
{}
