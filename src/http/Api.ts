import { HttpApi, OpenApi } from "@effect/platform"
import { DeadLettersApi } from "./api/DeadLetters.js"
import { DeviceApi } from "./api/Device.js"
import { IdentityAdminApi } from "./api/IdentityAdmin.js"
import { MatchingApi } from "./api/Matching.js"
import { SystemApi } from "./api/System.js"
import { VenueAdminApi } from "./api/VenueAdmin.js"

/** The whole HTTP API; each component adds its group here. */
export class GatehouseApi extends HttpApi.make("gatehouse")
  .add(SystemApi)
  .add(VenueAdminApi)
  .add(DeviceApi)
  .add(IdentityAdminApi)
  .add(MatchingApi)
  .add(DeadLettersApi)
  .annotate(OpenApi.Title, "Gatehouse")
  .annotate(
    OpenApi.Description,
    "Face-based venue admission. Every mutating device endpoint takes an Idempotency-Key; errors are application/problem+json."
  )
  .annotate(OpenApi.Version, "1.0.0")
{}
