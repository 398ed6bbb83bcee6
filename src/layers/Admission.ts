import { Layer } from "effect"
import * as AdmissionDirectory from "../services/AdmissionDirectory.js"
import { Admissions, CheckInSink } from "../services/Admissions.js"

/**
 * The admission component: gate decisions over the directory of the other components (events,
 * synced tickets and links, identification). Needs the database, the audit log, venues, tickets
 * and matching; never the ticketing provider.
 */
export const AdmissionLive = Admissions.layer.pipe(
  Layer.provide(AdmissionDirectory.layer),
  Layer.provide(CheckInSink.layerNone)
)
