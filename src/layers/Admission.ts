import { Layer } from "effect"
import * as AdmissionDirectory from "../services/AdmissionDirectory.js"
import { Admissions } from "../services/Admissions.js"
import { CheckInWriteBack } from "../services/CheckInWriteBack.js"

/**
 * The admission component: gate decisions over the directory of the other components (events,
 * synced tickets and links, identification), and granted check-ins handed to the outbox for the
 * provider write-back. Needs the database, the audit log, venues, tickets, matching, the outbox
 * and the queue; never the ticketing provider.
 */
export const AdmissionLive = Admissions.layer.pipe(
  Layer.provide(AdmissionDirectory.layer),
  Layer.provide(CheckInWriteBack.sink)
)
