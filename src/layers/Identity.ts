import { Layer } from "effect"
import { Audit } from "../services/Audit.js"
import { Devices } from "../services/Devices.js"
import { TemplateVault } from "../services/TemplateVault.js"
import { Venues } from "../services/Venues.js"

/** The identity component's services: venues, devices, templates and the audit log. */
export const IdentityLive = Layer.mergeAll(Venues.layer, Devices.layer, TemplateVault.layer).pipe(
  Layer.provideMerge(Audit.layer)
)
