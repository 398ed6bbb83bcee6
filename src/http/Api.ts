import { HttpApi, OpenApi } from "@effect/platform"
import { AdmissionAdminApi, AdmissionsApi, AdmissionViewsApi } from "./api/Admissions.js"
import { DeadLettersApi } from "./api/DeadLetters.js"
import { DeviceApi } from "./api/Device.js"
import { DeviceMessagesApi } from "./api/DeviceMessages.js"
import { IdentityAdminApi } from "./api/IdentityAdmin.js"
import { MatchingApi } from "./api/Matching.js"
import { PeopleApi } from "./api/People.js"
import { SystemApi } from "./api/System.js"
import { TicketAdminApi, TicketsApi } from "./api/Tickets.js"
import { VenueAdminApi } from "./api/VenueAdmin.js"

/** The whole HTTP API; each component adds its group here. */
export class GatehouseApi extends HttpApi.make("gatehouse")
  .add(SystemApi)
  .add(VenueAdminApi)
  .add(DeviceApi)
  .add(PeopleApi)
  .add(DeviceMessagesApi)
  .add(IdentityAdminApi)
  .add(DeadLettersApi)
  .add(MatchingApi)
  .add(TicketAdminApi)
  .add(TicketsApi)
  .add(AdmissionsApi)
  .add(AdmissionViewsApi)
  .add(AdmissionAdminApi)
  .annotate(OpenApi.Title, "Gatehouse")
  .annotate(
    OpenApi.Description,
    "Face-based venue admission. Every mutating device endpoint takes an Idempotency-Key; errors are application/problem+json."
  )
  .annotate(OpenApi.Version, "1.0.0")
{}
