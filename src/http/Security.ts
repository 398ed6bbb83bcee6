import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Effect, Layer, Redacted } from "effect"
import * as Crypto from "node:crypto"
import { Secrets } from "../layers/Secrets.js"
import { Unauthorized } from "./Errors.js"

/** Hash of an API key as stored and compared: keys themselves are never kept. */
export const hashKey = (key: string): Buffer => Crypto.createHash("sha256").update(key, "utf8").digest()

/** Admin endpoints: the bearer must be the configured admin key. */
export class AdminAuth extends HttpApiMiddleware.Tag<AdminAuth>()("gatehouse/AdminAuth", {
  failure: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {
  static readonly layer = Layer.effect(
    AdminAuth,
    Effect.gen(function*() {
      const secrets = yield* Secrets
      const expected = hashKey(Redacted.value(secrets.adminKey))
      return {
        bearer: (token) =>
          Crypto.timingSafeEqual(hashKey(Redacted.value(token)), expected)
            ? Effect.void
            : Effect.fail(new Unauthorized({ detail: "a valid admin key is required" }))
      }
    })
  )
}
