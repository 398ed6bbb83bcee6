import { Effect } from "effect"
import { PersonErased } from "../domain/Identity.js"
import type { Enrollment } from "../services/Enrollment.js"
import {
  AddedTemplates,
  AddTemplatesRejection,
  type AddTemplatesRequest,
  type ConsentChange,
  ConsentRejection,
  EnrollRejection,
  type EnrollRequest,
  EraseRejection,
  Erasure,
  Person
} from "./api/People.js"
import { orDieSql } from "./Sql.js"

interface Device {
  readonly deviceId: string
  readonly venueId: string
}

/**
 * The device messages about people, whether they arrive as their own request or as items of a
 * batch: the request each stands for (`method`, `url`, part of the idempotency fingerprint, so
 * both routes are one message), what idempotency stores, and the effect. Checks that need no
 * stored state run first, outside idempotency: a bad vector is refused before the request is
 * fingerprinted, and an erased person is refused even when a copy of the message that enrolled
 * them would otherwise replay "created".
 */
export const personMessages = (enrollment: Enrollment["Type"]) => {
  const refuseErased = (device: Device, personId: string) =>
    Effect.flatMap(
      orDieSql(enrollment.erasedAt({ venueId: device.venueId, deviceId: undefined }, personId)),
      (erasedAt) => erasedAt === undefined ? Effect.void : Effect.fail(new PersonErased({ personId, erasedAt }))
    )

  return {
    enroll: (device: Device, personId: string, payload: typeof EnrollRequest.Type) =>
      Effect.gen(function*() {
        yield* enrollment.checkTemplates(payload.templates)
        yield* refuseErased(device, personId)
        return {
          method: "POST",
          url: "/v1/people",
          options: { success: Person, status: 201, rejections: EnrollRejection, subject: personId },
          run: enrollment.enroll(device, { ...payload, personId })
        }
      }),

    addTemplates: (device: Device, personId: string, payload: typeof AddTemplatesRequest.Type) =>
      Effect.gen(function*() {
        yield* enrollment.checkTemplates(payload.templates)
        yield* refuseErased(device, personId)
        return {
          method: "POST",
          url: `/v1/people/${personId}/templates`,
          options: { success: AddedTemplates, status: 201, rejections: AddTemplatesRejection, subject: personId },
          run: enrollment.addTemplates(device, personId, payload.templates)
        }
      }),

    recordConsent: (device: Device, personId: string, payload: typeof ConsentChange.Type) =>
      Effect.as(refuseErased(device, personId), {
        method: "POST",
        url: `/v1/people/${personId}/consent`,
        options: { success: Person, rejections: ConsentRejection, subject: personId },
        run: enrollment.recordConsent(device, personId, payload)
      }),

    erase: (device: Device, personId: string) => ({
      method: "DELETE",
      url: `/v1/people/${personId}`,
      options: { success: Erasure, rejections: EraseRejection },
      run: enrollment.erase(device, personId)
    })
  }
}
