import { HttpApiEndpoint, HttpApiGroup, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { EventId, EventNotFound, PersonId, PersonNotFound } from "../../domain/Identity.js"
import { modelIds } from "../../domain/Models.js"
import { BoundedString } from "../../domain/Text.js"
import { AttemptLogFull } from "../../services/AttemptLog.js"
import { defaultTopK, MatchingUnavailable, maxTopK, ProbeInvalid } from "../../services/Matching.js"
import { DeviceAuth } from "../DeviceAuth.js"

const exampleVector = [0.5, 0.5, 0.5, 0.5]

export const ProbeTemplate = Schema.Struct({
  modelId: BoundedString(100).annotations({
    description: `The model that computed the vector: one of ${
      modelIds.join(", ")
    }. Only templates of this model are compared.`
  }),
  // Bounded only against abuse: the model's dimension is checked with a precise 422.
  vector: Schema.Array(Schema.Number).pipe(Schema.maxItems(8192)).annotations({
    description: "The probe embedding, as many values as the model's dimension; normalised by the server."
  })
}).annotations({
  identifier: "ProbeTemplate",
  examples: [{ modelId: "test-4d@1", vector: exampleVector }]
})

export const IdentifyRequest = Schema.Struct({
  eventId: EventId,
  probe: ProbeTemplate,
  topK: Schema.optional(
    Schema.Int.pipe(Schema.between(1, maxTopK)).annotations({
      description: `Most candidates to return (default ${defaultTopK}).`
    })
  )
}).annotations({
  identifier: "IdentifyRequest",
  examples: [{
    eventId: EventId.make("5b0f6f64-3c1e-4a53-9c44-2f1d1e6f7a10"),
    probe: { modelId: "test-4d@1", vector: exampleVector },
    topK: 3
  }]
})

export const Candidate = Schema.Struct({
  personId: Schema.UUID,
  score: Schema.Number.annotations({ description: "Cosine similarity of the person's best template, in [-1, 1]." })
}).annotations({ identifier: "Candidate" })

const Decision = Schema.Literal("match", "no_match").annotations({
  description: "match when at least one score reaches the model's threshold."
})

export const Identification = Schema.Struct({
  attemptId: Schema.UUID.annotations({ description: "Id of the recorded attempt in the audit log." }),
  decision: Decision,
  eventId: Schema.UUID,
  modelId: Schema.String,
  threshold: Schema.Number,
  candidates: Schema.Array(Candidate).annotations({
    description: "People of the event's gallery scoring at least the threshold, best first."
  })
}).annotations({
  identifier: "Identification",
  examples: [{
    attemptId: "0d6f1c54-8a7c-4f0e-b3c1-1f4f6f3c2a90",
    decision: "match",
    eventId: "5b0f6f64-3c1e-4a53-9c44-2f1d1e6f7a10",
    modelId: "test-4d@1",
    threshold: 0.9,
    candidates: [{ personId: "9a3c2f1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b", score: 0.97 }]
  }]
})

export const VerifyRequest = Schema.Struct({
  personId: PersonId,
  probe: ProbeTemplate
}).annotations({
  identifier: "VerifyRequest",
  examples: [{
    personId: PersonId.make("9a3c2f1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b"),
    probe: { modelId: "test-4d@1", vector: exampleVector }
  }]
})

export const Verification = Schema.Struct({
  attemptId: Schema.UUID.annotations({ description: "Id of the recorded attempt in the audit log." }),
  decision: Decision,
  personId: Schema.UUID,
  modelId: Schema.String,
  threshold: Schema.Number,
  score: Schema.NullOr(Schema.Number).annotations({
    description: "Best score of the person's templates of this model; null when they have none or no active consent."
  })
}).annotations({
  identifier: "Verification",
  examples: [{
    attemptId: "1e7f2d65-9b8d-4a1f-a4d2-2a5a7a4d3ba1",
    decision: "no_match",
    personId: "9a3c2f1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b",
    modelId: "test-4d@1",
    threshold: 0.9,
    score: 0.42
  }]
})

const queryNote = "A query: it needs no Idempotency-Key. Each call is one attempt, recorded in the audit log " +
  "(threshold, model, scores, candidate ids; never the probe). A retry is a new attempt answered from the current " +
  "gallery, never a stored answer, so a person whose consent was withdrawn is never found again by a replay."

/** 1:N identification and 1:1 verification for devices. */
export class MatchingApi extends HttpApiGroup.make("matching")
  .add(
    HttpApiEndpoint.post("identify", "/v1/identify")
      .setPayload(IdentifyRequest)
      .addSuccess(Identification)
      .addError(EventNotFound)
      .addError(ProbeInvalid)
      .addError(MatchingUnavailable)
      .addError(AttemptLogFull)
      .annotate(
        OpenApi.Description,
        "Searches the gallery of one event of the device's venue (people with active consent who hold a ticket " +
          "for it or were added as guests) for the probe, exactly, among templates of the probe's model. " +
          "Events of other venues are not found. " + queryNote
      )
  )
  .add(
    HttpApiEndpoint.post("verify", "/v1/verify")
      .setPayload(VerifyRequest)
      .addSuccess(Verification)
      .addError(PersonNotFound)
      .addError(ProbeInvalid)
      .addError(MatchingUnavailable)
      .addError(AttemptLogFull)
      .annotate(
        OpenApi.Description,
        "Compares the probe with one person of the device's venue (their templates of the probe's model). " +
          "People of other venues and erased people are not found. " + queryNote
      )
  )
  .middleware(DeviceAuth)
  .annotate(OpenApi.Title, "Matching")
{}
