import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Context, Effect, Layer, Redacted } from "effect"
import * as Crypto from "node:crypto"
import { Secrets } from "../layers/Secrets.js"
import { Devices } from "../services/Devices.js"
import { authenticateDevice } from "./DeviceAuth.js"
import { Unauthorized } from "./Errors.js"
import { hashKey } from "./Security.js"

/** Who reads: the admin (every venue) or a device (its own venue only). */
export type Viewer =
  | { readonly kind: "admin" }
  | { readonly kind: "device"; readonly deviceId: string; readonly venueId: string }

export class CurrentViewer extends Context.Tag("gatehouse/CurrentViewer")<CurrentViewer, Viewer>() {}

/** Whether the viewer may see a resource of `venueId`; others get 404, never 403, so existence is not disclosed. */
export const canSee = (viewer: Viewer, venueId: string) => viewer.kind === "admin" || viewer.venueId === venueId

/**
 * Read endpoints shared by devices and operators (an event's tickets or admissions): the bearer is
 * the admin key or a valid device key; handlers scope what they return with `canSee`.
 */
export class ViewerAuth extends HttpApiMiddleware.Tag<ViewerAuth>()("gatehouse/ViewerAuth", {
  failure: Unauthorized,
  provides: CurrentViewer,
  security: { bearer: HttpApiSecurity.bearer }
}) {
  static readonly layer = Layer.effect(
    ViewerAuth,
    Effect.gen(function*() {
      const authenticate = authenticateDevice(yield* Devices)
      const secrets = yield* Secrets
      const admin = hashKey(Redacted.value(secrets.adminKey))
      return {
        bearer: (token) =>
          Crypto.timingSafeEqual(hashKey(Redacted.value(token)), admin)
            ? Effect.succeed<Viewer>({ kind: "admin" })
            : Effect.map(
              authenticate(token, "a valid device or admin key is required"),
              (device): Viewer => ({ kind: "device", ...device })
            )
      }
    })
  )
}
