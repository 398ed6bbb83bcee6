import { Effect, Layer } from "effect"
import { Audit } from "../services/Audit.js"
import { Devices } from "../services/Devices.js"
import { Enrollment } from "../services/Enrollment.js"
import { supervised } from "../services/Supervisor.js"
import { TemplateVault } from "../services/TemplateVault.js"
import { Tickets } from "../services/Tickets.js"
import { Venues } from "../services/Venues.js"
import { AppConfig } from "./Config.js"

const StorageLive = Layer.mergeAll(TemplateVault.layer, Audit.layer)

/**
 * The identity component's services: venues, devices, enrollment, templates and the audit log.
 * Enrollment links a new person's synced tickets through the ticketing component's interface.
 */
export const IdentityLive = Layer.mergeAll(
  Venues.layer,
  Devices.layer,
  Enrollment.layer.pipe(Layer.provide(Tickets.layer))
).pipe(
  Layer.provideMerge(StorageLive)
)

/**
 * The retention job: erases people past their retention date, a batch per transaction until
 * none is due, then sleeps `RETENTION_INTERVAL_MS`. Several instances may run it at once: each
 * erasure takes the person's lock and checks again that the person is still due.
 */
export const RetentionLive = Layer.scopedDiscard(Effect.gen(function*() {
  const enrollment = yield* Enrollment
  const config = yield* AppConfig
  yield* supervised(
    "retention",
    Effect.forever(Effect.gen(function*() {
      let erased = yield* enrollment.retentionPass
      while (erased > 0) {
        yield* Effect.logInfo("retention erased people").pipe(
          Effect.annotateLogs({ component: "retention", count: erased })
        )
        erased = yield* enrollment.retentionPass
      }
      yield* Effect.sleep(config.retentionIntervalMs)
    }))
  )
})).pipe(Layer.provide(IdentityLive))
