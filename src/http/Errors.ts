import { HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"

/** The bearer key is missing, unknown or revoked. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {
  override get message() {
    return this.detail
  }
}

/** The key is valid but does not act for what was asked. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {
  override get message() {
    return this.detail
  }
}

/** Not ready: one or more components are starting or down. */
export class NotReady extends Schema.TaggedError<NotReady>()(
  "NotReady",
  {
    components: Schema.Record({
      key: Schema.String,
      value: Schema.Struct({ status: Schema.String, detail: Schema.optional(Schema.String), since: Schema.String })
    })
  },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return "one or more components are not ready"
  }
}
