import { HttpApiMiddleware, HttpApiSecurity } from "@effect/platform"
import { Context, Effect, Layer, Option, type Redacted } from "effect"
import { retryTransient } from "../services/Database.js"
import { Devices, type DevicesShape, type Principal } from "../services/Devices.js"
import { Unauthorized } from "./Errors.js"

/** The device a request acts for. Everything it reads or writes is within `venueId`. */
export class CurrentDevice extends Context.Tag("gatehouse/CurrentDevice")<CurrentDevice, {
  readonly deviceId: string
  readonly venueId: string
}>() {}

/**
 * The device a bearer key acts for, or `Unauthorized` with `detail` when the key is unknown or
 * revoked (or its device is). Transient database errors are retried; what is left is a defect,
 * answered as a 503 (database unreachable) or a 500. Shared by every middleware that accepts device keys.
 */
export const authenticateDevice = (devices: DevicesShape) =>
(
  token: Redacted.Redacted<string>,
  detail: string
): Effect.Effect<Principal, Unauthorized> =>
  retryTransient(devices.authenticate(token)).pipe(
    Effect.orDie,
    Effect.flatMap(Option.match({
      onNone: () => Effect.fail(new Unauthorized({ detail })),
      onSome: Effect.succeed
    }))
  )

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
    Effect.map(Devices, (devices) => {
      const authenticate = authenticateDevice(devices)
      return { bearer: (token) => authenticate(token, "a valid device key is required") }
    })
  )
}
