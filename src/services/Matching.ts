import { HttpApiSchema } from "@effect/platform"
import { Context, Duration, Effect, Either, Layer, Metric, MetricBoundaries, Option, Schema, Stream } from "effect"
import * as Crypto from "node:crypto"
import { type Candidate, Gallery } from "../domain/Gallery.js"
import { EventNotFound, PersonNotFound } from "../domain/Identity.js"
import { findModel, type Model } from "../domain/Models.js"
import * as Vector from "../domain/Vector.js"
import { AppConfig } from "../layers/Config.js"
import { type Attempt, AttemptLog, type AttemptLogFull } from "./AttemptLog.js"
import {
  type EventFingerprint,
  type GalleryChange,
  GallerySource,
  GallerySourceUnavailable,
  type SourceTemplate
} from "./GallerySource.js"
import { Health } from "./Health.js"
import { supervised } from "./Supervisor.js"

/** A probe that cannot be compared: `reason` says which rule it breaks. */
export class ProbeInvalid extends Schema.TaggedError<ProbeInvalid>()(
  "ProbeInvalid",
  {
    reason: Schema.Literal("unknown-model", "empty", "wrong-dimension", "not-finite", "zero"),
    detail: Schema.String
  },
  HttpApiSchema.annotations({ status: 422 })
) {
  override get message() {
    return `probe: ${this.detail}`
  }
}

/** Galleries are not loaded yet (start-up), or a comparison needs the database and it is unreachable. */
export class MatchingUnavailable extends Schema.TaggedError<MatchingUnavailable>()(
  "MatchingUnavailable",
  { detail: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {
  override get message() {
    return this.detail
  }
}

export interface Probe {
  readonly modelId: string
  readonly vector: ReadonlyArray<number>
}

/** Who asks: every answer is confined to the device's venue. */
export interface Requester {
  readonly deviceId: string
  readonly venueId: string
}

export interface IdentifyRequest {
  readonly eventId: string
  readonly probe: Probe
  readonly topK?: number | undefined
}

export interface Identification {
  readonly attemptId: string
  readonly decision: "match" | "no_match"
  readonly eventId: string
  readonly modelId: string
  readonly threshold: number
  /** People scoring at least the threshold, best first, at most `topK`. */
  readonly candidates: ReadonlyArray<Candidate>
}

export interface Verification {
  readonly attemptId: string
  readonly decision: "match" | "no_match"
  readonly personId: string
  readonly modelId: string
  readonly threshold: number
  /** Best score of the person's templates of the probe's model; null when they have none or no active consent. */
  readonly score: number | null
}

export interface MatchingStats {
  readonly loaded: boolean
  readonly events: number
  readonly galleries: number
  readonly templates: number
}

export interface MatchingShape {
  /** 1:N search of one event's gallery, in memory; records the attempt. */
  readonly identify: (
    requester: Requester,
    request: IdentifyRequest
  ) => Effect.Effect<Identification, EventNotFound | ProbeInvalid | MatchingUnavailable | AttemptLogFull>
  /**
   * `identify` without recording: the answer and the attempt, which the caller records itself
   * (`auditEntry` in the transaction that stores the answer, so that answer and attempt are both
   * kept once). Reads the database only for an event not held yet, on the caller's connection.
   */
  readonly search: (
    requester: Requester,
    request: IdentifyRequest
  ) => Effect.Effect<
    { readonly identification: Identification; readonly attempt: Attempt },
    EventNotFound | ProbeInvalid | MatchingUnavailable
  >
  /** The probe checks `identify` and `verify` make first, without the galleries or the database. */
  readonly checkProbe: (probe: Probe) => Effect.Effect<void, ProbeInvalid>
  /** 1:1 comparison with one person of the requester's venue; records the attempt. */
  readonly verify: (
    requester: Requester,
    request: { readonly personId: string; readonly probe: Probe }
  ) => Effect.Effect<Verification, PersonNotFound | ProbeInvalid | MatchingUnavailable | AttemptLogFull>
  /**
   * Removes a person from every gallery of this instance at once, without the database. Call it
   * after committing a consent withdrawal or an erasure; other instances learn of it from the
   * change announcement or, at the latest, from the next poll.
   */
  readonly forget: (personId: string) => Effect.Effect<void>
  /** Reloads what a change names from the source; waits for any sync in progress. */
  readonly apply: (change: GalleryChange) => Effect.Effect<void, GallerySourceUnavailable>
  /** Compares every held gallery with the source and corrects those that differ (the polling backstop). */
  readonly sync: Effect.Effect<void, GallerySourceUnavailable>
  readonly stats: Effect.Effect<MatchingStats>
}

const identifySeconds = Metric.histogram(
  "gatehouse_matching_identify_seconds",
  MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 12 }),
  "Time to search one event gallery for one probe"
)
const templatesHeld = Metric.gauge("gatehouse_matching_templates", {
  description: "Templates held in memory over all galleries"
})

interface HeldEvent {
  readonly venueId: string
  readonly galleries: Map<string, Gallery>
  /** The source's fingerprint when this gallery last agreed with it. */
  seen: EventFingerprint | undefined
}

export interface MatchingOptions {
  /** How often galleries are compared with the source. */
  readonly pollInterval: Duration.DurationInput
  /** Model registry: dimension and threshold of each model. */
  readonly models?: (modelId: string) => Model | undefined
}

// A request that must read the database (an event created since the last poll, a verification)
// waits at most this long before it is answered from memory or refused as unavailable.
const requestBudget = Duration.seconds(3)

/** Default and largest number of candidates an identification returns. */
export const defaultTopK = 5
export const maxTopK = 50

export const make = (options: MatchingOptions) =>
  Effect.gen(function*() {
    const source = yield* GallerySource
    const attempts = yield* AttemptLog
    const models = options.models ?? findModel

    const events = new Map<string, HeldEvent>()
    let loaded = false
    // Every sync and refresh takes a number when it starts; `forget` records the number it ran
    // at, so a sync that read the source before a withdrawal does not put the person back.
    let clock = 0
    const forgotten = new Map<string, number>()
    const lock = yield* Effect.makeSemaphore(1)

    const countTemplates = () => {
      let n = 0
      for (const held of events.values()) for (const g of held.galleries.values()) n += g.size
      return n
    }
    const publishSize = Effect.suspend(() => Metric.set(templatesHeld, countTemplates()))

    const galleryFor = (held: HeldEvent, modelId: string): Gallery | undefined => {
      const existing = held.galleries.get(modelId)
      if (existing !== undefined) return existing
      const model = models(modelId)
      if (model === undefined) return undefined
      const gallery = new Gallery(model.dimension)
      held.galleries.set(modelId, gallery)
      return gallery
    }

    const removePerson = (held: HeldEvent, personId: string) => {
      let removed = 0
      for (const gallery of held.galleries.values()) removed += gallery.removePerson(personId)
      return removed > 0
    }

    const blocked = (personId: string, startedAt: number) => (forgotten.get(personId) ?? -1) > startedAt

    /** Puts a template in its event gallery unless its model is unknown or its vector does not fit. */
    const place = (held: HeldEvent, t: SourceTemplate) => {
      const gallery = galleryFor(held, t.modelId)
      if (gallery === undefined || t.vector.length !== gallery.dimension) return false
      gallery.upsert({ templateId: t.templateId, personId: t.personId, vector: t.vector })
      return true
    }

    /** Makes one event's gallery equal to the source's listing, fetching only missing templates. */
    const syncEvent = (eventId: string, held: HeldEvent, startedAt: number) =>
      Effect.gen(function*() {
        // Templates of models this process does not know cannot be searched: not worth fetching.
        const listing = (yield* source.listing(eventId)).filter((t) => models(t.modelId) !== undefined)
        const wanted = new Map(listing.map((t) => [t.templateId, t]))
        const missing = listing.filter((t) => held.galleries.get(t.modelId)?.has(t.templateId) !== true)
        const people = [...new Set(missing.map((t) => t.personId))]
        const fetched = people.length === 0 ? [] : yield* source.templates(people)

        // Synchronous from here: a search sees the gallery before or after, never half-way.
        for (const [modelId, gallery] of held.galleries) {
          for (const templateId of gallery.templateIds()) {
            if (wanted.get(templateId)?.modelId !== modelId) gallery.remove(templateId)
          }
        }
        for (const t of fetched) {
          const listed = wanted.get(t.templateId)
          if (listed === undefined || listed.personId !== t.personId || blocked(t.personId, startedAt)) continue
          place(held, t)
        }
      })

    const syncAll = Effect.gen(function*() {
      const startedAt = ++clock
      const fingerprints = yield* source.events
      const current = new Set(fingerprints.map((f) => f.eventId))
      for (const eventId of [...events.keys()]) if (!current.has(eventId)) events.delete(eventId)
      for (const fingerprint of fingerprints) {
        let held = events.get(fingerprint.eventId)
        if (held === undefined) {
          held = { venueId: fingerprint.venueId, galleries: new Map(), seen: undefined }
          events.set(fingerprint.eventId, held)
        }
        const seen = held.seen
        if (seen !== undefined && seen.templates === fingerprint.templates && seen.checksum === fingerprint.checksum) {
          continue
        }
        yield* syncEvent(fingerprint.eventId, held, startedAt)
        held.seen = fingerprint
      }
      loaded = true
    }).pipe(
      Effect.ensuring(Effect.sync(() => forgotten.clear())),
      lock.withPermits(1),
      Effect.zipLeft(publishSize),
      Effect.withSpan("Matching.sync")
    )

    const refreshPerson = (personId: string) =>
      Effect.gen(function*() {
        const startedAt = ++clock
        const now = new Set(yield* source.eventsOf(personId))
        const templates = now.size === 0 ? [] : yield* source.templates([personId])

        for (const [eventId, held] of events) {
          let changed = removePerson(held, personId)
          if (now.has(eventId) && !blocked(personId, startedAt)) {
            for (const t of templates) if (t.personId === personId && place(held, t)) changed = true
          }
          // The gallery moved without the poll: compare it again at the next poll.
          if (changed) held.seen = undefined
        }
      }).pipe(Effect.ensuring(Effect.sync(() => forgotten.clear())), lock.withPermits(1))

    /** Loads an event that exists in the source but is not held yet (created since the last poll). */
    const loadEvent = (eventId: string, venueId: string) =>
      Effect.gen(function*() {
        const existing = events.get(eventId)
        if (existing !== undefined) return existing
        const held: HeldEvent = { venueId, galleries: new Map(), seen: undefined }
        yield* syncEvent(eventId, held, ++clock)
        events.set(eventId, held)
        return held
      }).pipe(Effect.ensuring(Effect.sync(() => forgotten.clear())), lock.withPermits(1))

    const apply = (change: GalleryChange) =>
      Effect.gen(function*() {
        yield* refreshPerson(change.personId)
        if (change.eventId !== undefined && !events.has(change.eventId)) {
          const venue = yield* source.eventVenue(change.eventId)
          if (Option.isSome(venue)) yield* loadEvent(change.eventId, venue.value)
        }
        yield* publishSize
      }).pipe(Effect.withSpan("Matching.apply"))

    const forget = (personId: string) =>
      Effect.sync(() => {
        forgotten.set(personId, ++clock)
        for (const held of events.values()) if (removePerson(held, personId)) held.seen = undefined
      }).pipe(Effect.zipRight(publishSize))

    const prepare = (probe: Probe) => {
      const model = models(probe.modelId)
      if (model === undefined) {
        return Either.left(new ProbeInvalid({ reason: "unknown-model", detail: `unknown model ${probe.modelId}` }))
      }
      return Either.mapBoth(Vector.prepare(probe.vector, model.dimension), {
        onLeft: (problem) =>
          new ProbeInvalid({ reason: reasons[problem._tag], detail: Vector.describeProblem(problem) }),
        onRight: (vector) => ({ model, vector })
      })
    }

    const notLoaded = new MatchingUnavailable({ detail: "galleries are still loading; try again shortly" })

    /** The held event of the requester's venue, loading it if it was created since the last poll. */
    const eventOf = (requester: Requester, eventId: string) =>
      Effect.gen(function*() {
        if (!loaded) return yield* notLoaded
        const held = events.get(eventId)
        if (held !== undefined) {
          return held.venueId === requester.venueId ? held : yield* new EventNotFound({ id: eventId })
        }
        const unavailable = () =>
          new MatchingUnavailable({ detail: "the event is not loaded and the database is unreachable" })
        const venue = yield* source.eventVenue(eventId).pipe(
          Effect.timeoutFail({ duration: requestBudget, onTimeout: unavailable }),
          Effect.mapError(unavailable)
        )
        if (Option.isNone(venue) || venue.value !== requester.venueId) return yield* new EventNotFound({ id: eventId })
        return yield* loadEvent(eventId, venue.value).pipe(
          Effect.timeoutFail({ duration: requestBudget, onTimeout: unavailable }),
          Effect.mapError(unavailable)
        )
      })

    const search: MatchingShape["search"] = (requester, request) =>
      Effect.gen(function*() {
        const held = yield* eventOf(requester, request.eventId)
        const { model, vector } = yield* prepare(request.probe)
        const topK = Math.min(maxTopK, Math.max(1, request.topK ?? defaultTopK))
        const gallery = held.galleries.get(model.id)

        const started = performance.now()
        const found = gallery === undefined ? [] : gallery.search(vector, topK)
        yield* Metric.update(identifySeconds, (performance.now() - started) / 1000)

        const candidates = found.filter((c) => c.score >= model.threshold)
        const result: Identification = {
          attemptId: Crypto.randomUUID(),
          decision: candidates.length > 0 ? "match" : "no_match",
          eventId: request.eventId,
          modelId: model.id,
          threshold: model.threshold,
          candidates
        }
        const attempt: Attempt = {
          kind: "identification",
          attemptId: result.attemptId,
          venueId: requester.venueId,
          deviceId: requester.deviceId,
          eventId: request.eventId,
          personId: candidates[0]?.personId,
          modelId: model.id,
          threshold: model.threshold,
          decision: result.decision,
          candidates,
          bestScore: found[0]?.score ?? null,
          templatesSearched: gallery?.size ?? 0
        }
        return { identification: result, attempt }
      }).pipe(Effect.withSpan("Matching.search"))

    const identify: MatchingShape["identify"] = (requester, request) =>
      Effect.flatMap(
        search(requester, request),
        ({ attempt, identification }) => Effect.as(attempts.record(attempt), identification)
      ).pipe(Effect.withSpan("Matching.identify"))

    const checkProbe: MatchingShape["checkProbe"] = (probe) =>
      Either.match(prepare(probe), { onLeft: Effect.fail, onRight: () => Effect.void })

    /** The person's templates of one model: from the source, or from any held gallery of their venue. */
    const templatesOf = (requester: Requester, personId: string, modelId: string) =>
      Effect.gen(function*() {
        const person = yield* source.person(personId)
        if (Option.isNone(person) || person.value.venueId !== requester.venueId) {
          return yield* new PersonNotFound({ id: personId })
        }
        if (!person.value.active) return Option.none<ReadonlyArray<Float32Array>>()
        const templates = yield* source.templates([personId])
        return Option.some(templates.filter((t) => t.modelId === modelId).map((t) => t.vector))
      })

    const fromMemory = (requester: Requester, personId: string, modelId: string, probe: Float32Array) => {
      let best: number | undefined
      for (const held of events.values()) {
        if (held.venueId !== requester.venueId) continue
        const score = held.galleries.get(modelId)?.bestScore(personId, probe)
        if (score !== undefined && (best === undefined || score > best)) best = score
      }
      return best
    }

    const verify: MatchingShape["verify"] = (requester, request) =>
      Effect.gen(function*() {
        const { model, vector } = yield* prepare(request.probe)
        const score = yield* templatesOf(requester, request.personId, model.id).pipe(
          Effect.timeoutFail({
            duration: requestBudget,
            onTimeout: () => new GallerySourceUnavailable({ cause: new Error("timed out") })
          }),
          Effect.map(Option.map((vectors) => {
            let best: number | undefined
            for (const v of vectors) {
              if (v.length !== vector.length) continue
              const s = Vector.cosine(v, vector)
              if (best === undefined || s > best) best = s
            }
            return best
          })),
          Effect.map(Option.getOrUndefined),
          // The database is unreachable: a person held in a gallery of this venue can still be verified.
          Effect.catchTag("GallerySourceUnavailable", () => {
            const best = fromMemory(requester, request.personId, model.id, vector)
            return best === undefined
              ? Effect.fail(
                new MatchingUnavailable({ detail: "the person is not held in memory and the database is unreachable" })
              )
              : Effect.succeed(best)
          })
        )

        const result: Verification = {
          attemptId: Crypto.randomUUID(),
          decision: score !== undefined && score >= model.threshold ? "match" : "no_match",
          personId: request.personId,
          modelId: model.id,
          threshold: model.threshold,
          score: score ?? null
        }
        yield* attempts.record({
          kind: "verification",
          attemptId: result.attemptId,
          venueId: requester.venueId,
          deviceId: requester.deviceId,
          personId: request.personId,
          modelId: model.id,
          threshold: model.threshold,
          decision: result.decision,
          candidates: result.decision === "match" ? [{ personId: request.personId, score: score! }] : [],
          bestScore: score ?? null,
          templatesSearched: score === undefined ? 0 : 1
        })
        return result
      }).pipe(Effect.withSpan("Matching.verify"))

    const stats = Effect.sync((): MatchingStats => {
      let galleries = 0
      for (const held of events.values()) galleries += held.galleries.size
      return { loaded, events: events.size, galleries, templates: countTemplates() }
    })

    return { identify, search, checkProbe, verify, forget, apply, sync: syncAll, stats } satisfies MatchingShape
  })

const reasons = {
  Empty: "empty",
  WrongDimension: "wrong-dimension",
  NotFinite: "not-finite",
  Zero: "zero"
} as const

/** In-memory galleries of every held event, kept equal to the gallery source. */
export class Matching extends Context.Tag("gatehouse/Matching")<Matching, MatchingShape>() {
  /**
   * The service with its background work: the first sync loads every gallery before the layer is
   * built (if it fails, the component is "starting" until a poll succeeds), announced changes
   * are applied as they come, and a poll compares
   * every gallery with the source as a backstop for lost announcements. While the source is
   * unreachable the component is "degraded" and answers from its last state.
   */
  static readonly layerWith = (options: MatchingOptions) =>
    Layer.scoped(
      Matching,
      Effect.gen(function*() {
        const matching = yield* make(options)
        const source = yield* GallerySource
        const health = yield* Health
        const log = Effect.annotateLogs({ component: "matching" })

        const syncOnce = Effect.gen(function*() {
          const wasLoaded = (yield* matching.stats).loaded
          yield* matching.sync.pipe(
            Effect.zipRight(health.set("matching", "up")),
            Effect.tap(() => wasLoaded ? Effect.void : Effect.logInfo("galleries loaded").pipe(log)),
            Effect.catchAll((error) =>
              Effect.zipRight(
                Effect.logWarning("gallery sync failed, serving the last state", error).pipe(log),
                health.set("matching", wasLoaded ? "degraded" : "starting", error.message)
              )
            )
          )
        })

        const poll = Effect.gen(function*() {
          if (!(yield* matching.stats).loaded) yield* health.set("matching", "starting")
          while (true) {
            yield* Effect.sleep(options.pollInterval)
            yield* syncOnce
          }
        })

        const listen = source.changes.pipe(
          Stream.runForEach((change) =>
            matching.apply(change).pipe(
              Effect.catchAll((error) =>
                Effect.logWarning("gallery change not applied, the poll will catch up", error).pipe(log)
              )
            )
          )
        )

        // Listen first, so that a change committed during the first load is not missed; it is
        // applied once the load is done.
        yield* supervised("matching-changes", listen)
        // The first load happens before the server listens: a ready instance can identify.
        yield* syncOnce
        yield* supervised("matching", poll)
        return matching
      })
    )

  static readonly layer = Layer.unwrapEffect(
    Effect.map(AppConfig, (config) => Matching.layerWith({ pollInterval: Duration.millis(config.matchingPollMs) }))
  )
}
