/**
 * Setup of the HTTP identification variant, run inside the bench service process and not timed:
 * enrolls `count` people of a venue through the enrollment service (one 512-dimension template
 * each) and adds them to an event's guests, so the event's gallery holds them.
 */
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import { IdentityLive } from "../src/layers/Identity.js"
import { Enrollment } from "../src/services/Enrollment.js"
import { Venues } from "../src/services/Venues.js"
import { vector } from "./support/vectors.js"

export const benchModel = "arcface-r100@1"

export interface GalleryArgs {
  readonly venueId: string
  readonly deviceId: string
  readonly eventId: string
  readonly count: number
  /** Person i's template is `vector(seed + i)`. */
  readonly seed: number
}

export const fillGallery = (args: GalleryArgs) =>
  Effect.gen(function*() {
    const enrollment = yield* Enrollment
    const venues = yield* Venues
    for (let i = 0; i < args.count; i++) {
      const person = yield* enrollment.enroll({ venueId: args.venueId, deviceId: args.deviceId }, {
        personId: Crypto.randomUUID(),
        consent: {
          purposes: ["venue-admission"],
          noticeVersion: "bench",
          jurisdiction: "EU-GDPR",
          method: "kiosk-signature",
          givenAt: new Date()
        },
        templates: [{ modelId: benchModel, vector: vector(args.seed + i) }]
      })
      yield* venues.addGuest(args.eventId, person.personId)
    }
    return { enrolled: args.count }
  }).pipe(Effect.provide(IdentityLive))
