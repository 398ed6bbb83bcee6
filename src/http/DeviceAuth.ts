import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Context, Effect, Layer, Option } from "effect"
import { retryTransient } from "../services/Database.js"
import { Devices } from "../services/Devices.js"
import { Unauthorized } from "./Errors.js"

/** The device a request acts for. Everything it reads or writes is within `venueId`. */
export class CurrentDevice extends Context.Tag("gatehouse/CurrentDevice")<CurrentDevice, {
  readonly deviceId: string
  readonly venueId: string
}>() {}

/**
 * Device endpoints: the bearer must be a device key that is neither revoked nor of a revoked
 * device. Handlers read the device from `CurrentDevice`; resources of other venues answer 404.
 */
export class DeviceAuth extends HttpApiMiddleware.Tag<DeviceAuth>()("gatehouse/DeviceAuth", {
  failure: Unauthorized,
  provides: CurrentDevice,
  security: { bearer: HttpApiSecurity.bearer }
}) {
  static readonly layer = Layer.effect(
    DeviceAuth,
    Effect.gen(function*() {
      const devices = yield* Devices
      return {
        bearer: (token) =>
          retryTransient(devices.authenticate(token)).pipe(
            Effect.orDie,
            Effect.flatMap(Option.match({
              onNone: () => Effect.fail(new Unauthorized({ detail: "a valid device key is required" })),
              onSome: (principal) => Effect.succeed(principal)
            }))
          )
      }
    })
  )
}
