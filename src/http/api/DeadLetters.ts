import { HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { DeadLetter, DeadLetterNotFound } from "../../services/DeadLetters.js"
import { Unauthorized } from "../Errors.js"
import { AdminAuth } from "../Security.js"

const idParam = HttpApiSchema.param("id", Schema.NumberFromString.pipe(Schema.int(), Schema.positive()))

export const DeadLetterPage = Schema.Struct({
  items: Schema.Array(DeadLetter),
  total: Schema.Number.annotations({ description: "Dead letters matching the filters" }),
  next: Schema.optional(Schema.Number).annotations({ description: "Pass as `before` for the next page" })
})

/** Parked messages of the outbox and the work queue, for operators (admin key). */
export class DeadLettersApi extends HttpApiGroup.make("deadLetters")
  .add(
    HttpApiEndpoint.get("list", "/v1/admin/dead-letters")
      .setUrlParams(Schema.Struct({
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500))),
        before: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.positive())),
        source: Schema.optional(Schema.Literal("outbox", "queue")),
        topic: Schema.optional(Schema.String.pipe(Schema.maxLength(200)))
      }))
      .addSuccess(DeadLetterPage)
      .annotate(OpenApi.Description, "Newest first, each with the error that parked it; at most `limit` (default 50).")
  )
  .add(
    HttpApiEndpoint.get("get")`/v1/admin/dead-letters/${idParam}`
      .addSuccess(DeadLetter)
      .addError(DeadLetterNotFound)
  )
  .add(
    HttpApiEndpoint.post("retry")`/v1/admin/dead-letters/${idParam}/retry`
      .addSuccess(Schema.Struct({ id: Schema.Number, requeuedTo: Schema.Literal("outbox", "queue") }))
      .addError(DeadLetterNotFound)
      .annotate(
        OpenApi.Description,
        "Puts the message back with fresh attempts under its original message id; a second retry of the same id is 404."
      )
  )
  .add(
    HttpApiEndpoint.del("discard")`/v1/admin/dead-letters/${idParam}`
      .addSuccess(HttpApiSchema.NoContent)
      .addError(DeadLetterNotFound)
  )
  .middleware(AdminAuth)
  .addError(Unauthorized)
  .annotate(OpenApi.Title, "Dead letters")
{}
