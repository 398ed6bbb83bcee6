import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import {
  ConsentNotActive,
  ExternalRefTaken,
  PersonAlreadyEnrolled,
  PersonErased,
  PersonId,
  PersonIdUnavailable,
  PersonNotFound,
  TemplateInvalid,
  TemplateLimitReached
} from "../../domain/Identity.js"
import { modelIds } from "../../domain/Models.js"
import { BoundedString } from "../../domain/Text.js"
import { DeviceAuth } from "../DeviceAuth.js"
import { idempotentEndpoint } from "../Idempotency.js"

const Timestamp = Schema.Date.annotations({ description: "ISO 8601 date and time" })
const Label = BoundedString(100)

const consentGrantFields = {
  purposes: Schema.Array(Label).pipe(Schema.minItems(1), Schema.maxItems(20)).annotations({
    description: "What the person consented to, e.g. venue-admission."
  }),
  noticeVersion: Label.annotations({ description: "Version of the privacy notice the person was shown." }),
  jurisdiction: Label.annotations({ description: "Legal framework the consent was collected under, e.g. EU-GDPR." }),
  method: Label.annotations({ description: "How consent was collected, e.g. kiosk-signature." }),
  givenAt: Timestamp.annotations({ description: "When the person gave consent, by the device's clock." }),
  expiresAt: Schema.optional(
    Timestamp.annotations({ description: "When the consent ends by its own terms; after givenAt." })
  )
}

/** A consent that ends before it was given is a device's mistake, not an expired person. */
const endsAfterGiven = (grant: { readonly givenAt: Date; readonly expiresAt?: Date | undefined }) =>
  grant.expiresAt === undefined || grant.expiresAt.getTime() > grant.givenAt.getTime() ||
  { path: ["expiresAt"], message: "expiresAt must be later than givenAt" }

export const ConsentGrant = Schema.Struct(consentGrantFields).pipe(Schema.filter(endsAfterGiven)).annotations({
  identifier: "ConsentGrant"
})

export const TemplateInput = Schema.Struct({
  modelId: Label.annotations({ description: `Embedding model: one of ${modelIds.join(", ")}.` }),
  vector: Schema.Array(Schema.Number).pipe(Schema.maxItems(4096)).annotations({
    description: "The embedding: finite numbers, as many as the model's dimension, not all zero. Stored normalised."
  })
}).annotations({ identifier: "TemplateInput" })

const Templates = Schema.Array(TemplateInput).pipe(Schema.minItems(1), Schema.maxItems(16))

const consentExample = {
  purposes: ["venue-admission"],
  noticeVersion: "2024-05",
  jurisdiction: "EU-GDPR",
  method: "kiosk-signature",
  givenAt: new Date("2024-06-01T18:00:00Z")
}
const templateExample = { modelId: "test-4d@1", vector: [0.12, -0.4, 0.33, 0.9] }

export const EnrollRequest = Schema.Struct({
  personId: Schema.optional(PersonId.annotations({
    description: "Chosen by the device (a UUID); every copy of the enrollment names it. Default: derived " +
      "from the device and the Idempotency-Key (or batch message id)."
  })),
  externalRef: Schema.optional(
    BoundedString(200).annotations({
      description: "The holder reference that tickets carry, unique within the venue."
    })
  ),
  consent: ConsentGrant,
  templates: Templates
}).annotations({
  identifier: "EnrollRequest",
  examples: [{
    personId: "6f1c2a4e-2b7d-4c1e-9a55-0d3f1e2b7c11" as PersonId,
    externalRef: "holder-8812",
    consent: consentExample,
    templates: [templateExample]
  }]
})

export const AddTemplatesRequest = Schema.Struct({ templates: Templates }).annotations({
  identifier: "AddTemplatesRequest",
  examples: [{ templates: [templateExample] }]
})

export const ConsentChange = Schema.Union(
  Schema.Struct({ state: Schema.Literal("granted"), ...consentGrantFields }).pipe(Schema.filter(endsAfterGiven)),
  Schema.Struct({
    state: Schema.Literal("withdrawn"),
    method: Label,
    givenAt: Timestamp.annotations({ description: "When the person withdrew consent, by the device's clock." })
  })
).annotations({
  identifier: "ConsentChange",
  examples: [{ state: "withdrawn", method: "kiosk-button", givenAt: new Date("2024-07-01T10:00:00Z") }]
})

export const ConsentRecord = Schema.Struct({
  state: Schema.Literal("granted", "withdrawn"),
  purposes: Schema.Array(Schema.String),
  noticeVersion: Schema.String,
  jurisdiction: Schema.String,
  method: Schema.String,
  givenAt: Schema.Date,
  expiresAt: Schema.NullOr(Schema.Date),
  recordedAt: Schema.Date
}).annotations({ identifier: "ConsentRecord" })

export const TemplateMetadata = Schema.Struct({
  templateId: Schema.UUID,
  modelId: Schema.String,
  dimension: Schema.Number,
  createdAt: Schema.Date
}).annotations({ identifier: "TemplateMetadata", description: "A stored template; its vector is never returned." })

const examplePerson = "6f1c2a4e-2b7d-4c1e-9a55-0d3f1e2b7c11"
const exampleVenue = "0c9a3d52-7e41-4b8f-a2c6-5d1e9f3b7a20"
const exampleAt = new Date("2024-06-01T18:00:05Z")
const exampleConsent = {
  state: "granted" as const,
  ...consentExample,
  expiresAt: null,
  recordedAt: exampleAt
}
const exampleTemplate = {
  templateId: "3b5e8f1a-9c2d-4e7f-8a1b-6c4d2e9f0a13",
  modelId: "test-4d@1",
  dimension: 4,
  createdAt: exampleAt
}

export const Person = Schema.Struct({
  personId: Schema.UUID,
  venueId: Schema.UUID,
  externalRef: Schema.NullOr(Schema.String),
  status: Schema.Literal("active", "withdrawn", "expired").annotations({
    description: "active: consent granted and unexpired, the person can be identified; otherwise not."
  }),
  createdAt: Schema.Date,
  lastInteractionAt: Schema.Date,
  retainUntil: Schema.Date.annotations({ description: "When the retention job erases the person if nothing happens." }),
  consent: ConsentRecord,
  consentHistory: Schema.Array(ConsentRecord),
  templates: Schema.Array(TemplateMetadata)
}).annotations({
  identifier: "Person",
  examples: [{
    personId: examplePerson,
    venueId: exampleVenue,
    externalRef: "holder-8812",
    status: "active",
    createdAt: exampleAt,
    lastInteractionAt: exampleAt,
    retainUntil: new Date("2027-06-01T18:00:05Z"),
    consent: exampleConsent,
    consentHistory: [exampleConsent],
    templates: [exampleTemplate]
  }]
})

export const AddedTemplates = Schema.Struct({
  personId: Schema.UUID,
  templates: Schema.Array(TemplateMetadata)
}).annotations({
  identifier: "AddedTemplates",
  examples: [{ personId: examplePerson, templates: [exampleTemplate] }]
})

export const Erasure = Schema.Struct({
  personId: Schema.UUID,
  status: Schema.Literal("erased"),
  erasedAt: Schema.Date
}).annotations({
  identifier: "Erasure",
  examples: [{ personId: examplePerson, status: "erased", erasedAt: new Date("2024-07-02T09:30:00Z") }]
})

/** Rejections of each endpoint that are the request's fault: stored and replayed by idempotency. */
export const EnrollRejection = Schema.Union(
  PersonErased,
  PersonIdUnavailable,
  PersonAlreadyEnrolled,
  ExternalRefTaken,
  TemplateInvalid,
  TemplateLimitReached
)
export const AddTemplatesRejection = Schema.Union(
  PersonNotFound,
  PersonErased,
  ConsentNotActive,
  TemplateInvalid,
  TemplateLimitReached
)
export const ConsentRejection = Schema.Union(PersonNotFound, PersonErased)
export const EraseRejection = PersonNotFound

const personPath = Schema.Struct({ personId: PersonId })

/** Enrollment, consent and erasure of people, by the devices of a venue. */
export class PeopleApi extends HttpApiGroup.make("people")
  .add(
    HttpApiEndpoint.post("enroll", "/v1/people")
      .setPayload(EnrollRequest)
      .addSuccess(Person, { status: 201 })
      .addError(PersonErased)
      .addError(PersonIdUnavailable)
      .addError(PersonAlreadyEnrolled)
      .addError(ExternalRefTaken)
      .addError(TemplateInvalid)
      .addError(TemplateLimitReached)
      .pipe(idempotentEndpoint)
      .annotate(
        OpenApi.Description,
        "Enroll a person with a consent record and one or more templates, all or nothing. An erased person id " +
          "is refused with 410 PersonErased, also for a redelivered copy of the original enrollment."
      )
  )
  .add(
    HttpApiEndpoint.post("addTemplates", "/v1/people/:personId/templates")
      .setPath(personPath)
      .setPayload(AddTemplatesRequest)
      .addSuccess(AddedTemplates, { status: 201 })
      .addError(PersonNotFound)
      .addError(PersonErased)
      .addError(ConsentNotActive)
      .addError(TemplateInvalid)
      .addError(TemplateLimitReached)
      .pipe(idempotentEndpoint)
      .annotate(OpenApi.Description, "Add templates to a person whose consent is active.")
  )
  .add(
    HttpApiEndpoint.post("recordConsent", "/v1/people/:personId/consent")
      .setPath(personPath)
      .setPayload(ConsentChange)
      .addSuccess(Person)
      .addError(PersonNotFound)
      .addError(PersonErased)
      .pipe(idempotentEndpoint)
      .annotate(
        OpenApi.Description,
        "Append to the consent history. Withdrawal removes the person from every gallery in the same commit; " +
          "the retention job then erases them."
      )
  )
  .add(
    HttpApiEndpoint.get("get", "/v1/people/:personId")
      .setPath(personPath)
      .addSuccess(Person)
      .addError(PersonNotFound)
      .addError(PersonErased)
      .annotate(OpenApi.Description, "Status, consent history and template metadata; never vectors.")
  )
  .add(
    HttpApiEndpoint.del("erase", "/v1/people/:personId")
      .setPath(personPath)
      .addSuccess(Erasure)
      .addError(PersonNotFound)
      .pipe(idempotentEndpoint)
      .annotate(
        OpenApi.Description,
        "Erase a person: templates, data key, consent history and gallery entries. Idempotent; a tombstone " +
          "without personal data refuses later enrollments under this id. Erasing an id not (yet) enrolled " +
          "tombstones it, so an enrollment that arrives after its erasure is refused."
      )
  )
  .middleware(DeviceAuth)
  .annotate(OpenApi.Title, "People")
{}
