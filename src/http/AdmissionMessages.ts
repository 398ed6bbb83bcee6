import { Effect } from "effect"
import { type Admissions, checkProbe, type Scan } from "../services/Admissions.js"
import { AdmissionAnswer, type AdmissionRequest, AdmitRejection } from "./api/Admissions.js"

interface Device {
  readonly deviceId: string
  readonly venueId: string
}

const scanOf = (device: Device, payload: typeof AdmissionRequest.Type): Scan => ({
  deviceId: device.deviceId,
  venueId: device.venueId,
  nonce: payload.nonce,
  eventId: payload.eventId,
  gate: payload.gate,
  direction: payload.direction,
  offline: payload.offline,
  deviceTime: payload.deviceTime,
  target: payload.probe !== undefined
    ? { _tag: "Probe", probe: payload.probe }
    : { _tag: "Ticket", reference: payload.ticket!.reference }
})

/**
 * A gate scan, whether it arrives as its own request or as an item of a batch: the request it
 * stands for (`method`, `url`), what idempotency stores, and the effect. A probe that cannot be
 * searched is refused first, outside idempotency, so nothing about it is stored.
 */
export const admissionMessages = (admissions: Admissions["Type"]) => ({
  admit: (device: Device, payload: typeof AdmissionRequest.Type) =>
    Effect.gen(function*() {
      if (payload.probe !== undefined) yield* checkProbe(payload.probe)
      return {
        method: "POST",
        url: "/v1/admissions",
        options: { success: AdmissionAnswer, rejections: AdmitRejection },
        run: Effect.map(
          admissions.admit(scanOf(device, payload)),
          ({ admission, replayed }): typeof AdmissionAnswer.Type => ({ ...admission, replayed })
        )
      }
    })
})
