import { Schema } from "effect"

// Lone surrogates and NUL cannot be stored in PostgreSQL text and break JSON round trips.
const unsafe = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** A string without NUL characters or lone surrogates. */
export const SafeString = Schema.String.pipe(
  Schema.filter((s) => !unsafe.test(s) || "must not contain NUL characters or lone surrogates", {
    identifier: "SafeString"
  })
)

/** A non-empty `SafeString` of at most `max` characters. */
export const BoundedString = (max: number) => SafeString.pipe(Schema.minLength(1), Schema.maxLength(max))
