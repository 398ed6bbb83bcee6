import { Context, Data, Effect, Layer, Option, PubSub, Ref, Stream } from "effect"

/**
 * Where galleries come from: who may be identified at which event, and their decrypted
 * templates. Matching keeps galleries in memory and asks the source only to rebuild or correct
 * them, so identification never waits on it. The SQL implementation (`GallerySourceSql`) reads
 * the `event_gallery` view and opens templates through the template vault; `layerMemory` is a
 * store for tests.
 */

/** The source could not answer (database unreachable, timeout). Matching serves its last state. */
export class GallerySourceUnavailable extends Data.TaggedError("GallerySourceUnavailable")<{
  readonly cause: unknown
}> {
  override get message() {
    return `the gallery source is unavailable: ${this.cause instanceof Error ? this.cause.message : this.cause}`
  }
}

/**
 * An event whose gallery is held, and a fingerprint of its content: the number of templates of
 * the people in its gallery and a checksum over their ids. Any change of who is in the gallery or
 * of their templates changes the fingerprint (up to hash collisions).
 */
export interface EventFingerprint {
  readonly eventId: string
  readonly venueId: string
  readonly templates: number
  readonly checksum: number
}

/** A template of an event's gallery, without its vector. */
export interface ListedTemplate {
  readonly templateId: string
  readonly personId: string
  readonly modelId: string
}

/** A decrypted, normalised template. */
export interface SourceTemplate extends ListedTemplate {
  readonly vector: Float32Array
}

/** The person behind a 1:1 verification. */
export interface SourcePerson {
  readonly personId: string
  readonly venueId: string
  /** Consent is active (and not expired): the person may be compared at all. */
  readonly active: boolean
}

/**
 * Something changed for one person (templates, consent, erasure) or for their membership of one
 * event. Carries ids only; receivers reload from the source.
 */
export interface GalleryChange {
  readonly personId: string
  readonly eventId?: string | undefined
}

export interface GallerySourceShape {
  /** Every event whose gallery should be held now, with its fingerprint. */
  readonly events: Effect.Effect<ReadonlyArray<EventFingerprint>, GallerySourceUnavailable>
  /** The templates in one event's gallery, without vectors. */
  readonly listing: (eventId: string) => Effect.Effect<ReadonlyArray<ListedTemplate>, GallerySourceUnavailable>
  /** The held events whose gallery has this person now. */
  readonly eventsOf: (personId: string) => Effect.Effect<ReadonlyArray<string>, GallerySourceUnavailable>
  /** Decrypted templates of these people, whatever their galleries. */
  readonly templates: (
    personIds: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<SourceTemplate>, GallerySourceUnavailable>
  /** The venue of an event, held or not; none if there is no such event. */
  readonly eventVenue: (eventId: string) => Effect.Effect<Option.Option<string>, GallerySourceUnavailable>
  /** A person's venue and consent state; none if unknown or erased. */
  readonly person: (personId: string) => Effect.Effect<Option.Option<SourcePerson>, GallerySourceUnavailable>
  /**
   * Changes as the source announces them. Announcements can be lost (a LISTEN connection that
   * dies goes quiet), so receivers also poll `events`.
   */
  readonly changes: Stream.Stream<GalleryChange, GallerySourceUnavailable>
}

export class GallerySource extends Context.Tag("gatehouse/GallerySource")<GallerySource, GallerySourceShape>() {}

/** The same checksum the SQL source computes with `hashtext`, for the memory store: any 32-bit hash will do. */
const hash32 = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h | 0
}

interface MemoryPerson {
  readonly venueId: string
  active: boolean
  readonly templates: Map<string, { readonly modelId: string; readonly vector: Float32Array }>
}

interface MemoryState {
  readonly events: Map<string, { readonly venueId: string; readonly guests: Set<string> }>
  readonly people: Map<string, MemoryPerson>
}

/** Test controls of the memory source: each change is announced unless `announce` is false. */
export interface GallerySourceMemory {
  readonly addEvent: (eventId: string, venueId: string) => Effect.Effect<void>
  readonly removeEvent: (eventId: string) => Effect.Effect<void>
  readonly addPerson: (personId: string, venueId: string) => Effect.Effect<void>
  readonly addTemplate: (
    personId: string,
    template: { readonly templateId: string; readonly modelId: string; readonly vector: Float32Array },
    announce?: boolean
  ) => Effect.Effect<void>
  readonly addGuest: (eventId: string, personId: string, announce?: boolean) => Effect.Effect<void>
  readonly setConsent: (personId: string, active: boolean, announce?: boolean) => Effect.Effect<void>
  readonly erase: (personId: string, announce?: boolean) => Effect.Effect<void>
  /** While set, every read fails as if the database were down. */
  readonly setAvailable: (available: boolean) => Effect.Effect<void>
  /** Number of reads that reached the store, to observe caching. */
  readonly reads: Effect.Effect<number>
}

export class GallerySourceMemoryControl
  extends Context.Tag("gatehouse/GallerySourceMemoryControl")<GallerySourceMemoryControl, GallerySourceMemory>()
{}

/** An in-memory source with the same semantics as the SQL one, and controls for tests. */
export const layerMemory: Layer.Layer<GallerySource | GallerySourceMemoryControl> = Layer.effectContext(
  Effect.gen(function*() {
    const state: MemoryState = { events: new Map(), people: new Map() }
    const available = yield* Ref.make(true)
    const reads = yield* Ref.make(0)
    const pubsub = yield* PubSub.unbounded<GalleryChange>()

    const read = <A>(f: () => A) =>
      Effect.flatMap(Ref.get(available), (up) =>
        up
          ? Effect.zipRight(Ref.update(reads, (n) => n + 1), Effect.sync(f))
          : Effect.fail(new GallerySourceUnavailable({ cause: new Error("memory source switched off") })))

    const announce = (change: GalleryChange, yes = true) => yes ? PubSub.publish(pubsub, change) : Effect.void

    const inGallery = (eventId: string, personId: string) => {
      const event = state.events.get(eventId)
      const person = state.people.get(personId)
      return event !== undefined && person !== undefined && person.active && event.guests.has(personId)
    }

    const listingOf = (eventId: string): Array<ListedTemplate> => {
      const event = state.events.get(eventId)
      if (event === undefined) return []
      return [...event.guests].filter((p) => inGallery(eventId, p)).flatMap((personId) =>
        [...state.people.get(personId)!.templates].map(([templateId, t]) => ({
          templateId,
          personId,
          modelId: t.modelId
        }))
      )
    }

    const source: GallerySourceShape = {
      events: read(() =>
        [...state.events].map(([eventId, event]) => {
          const listed = listingOf(eventId)
          return {
            eventId,
            venueId: event.venueId,
            templates: listed.length,
            checksum: listed.reduce((sum, t) => sum + hash32(t.templateId), 0)
          }
        })
      ),
      listing: (eventId) => read(() => listingOf(eventId)),
      eventsOf: (personId) => read(() => [...state.events.keys()].filter((e) => inGallery(e, personId))),
      templates: (personIds) =>
        read(() =>
          personIds.flatMap((personId) =>
            [...state.people.get(personId)?.templates ?? []].map(([templateId, t]) => ({
              templateId,
              personId,
              modelId: t.modelId,
              vector: t.vector
            }))
          )
        ),
      eventVenue: (eventId) => read(() => Option.fromNullable(state.events.get(eventId)?.venueId)),
      person: (personId) =>
        read(() =>
          Option.map(
            Option.fromNullable(state.people.get(personId)),
            (p): SourcePerson => ({ personId, venueId: p.venueId, active: p.active })
          )
        ),
      changes: Stream.fromPubSub(pubsub)
    }

    const control: GallerySourceMemory = {
      addEvent: (eventId, venueId) => Effect.sync(() => void state.events.set(eventId, { venueId, guests: new Set() })),
      removeEvent: (eventId) => Effect.sync(() => void state.events.delete(eventId)),
      addPerson: (personId, venueId) =>
        Effect.sync(() => void state.people.set(personId, { venueId, active: true, templates: new Map() })),
      addTemplate: (personId, template, yes) =>
        Effect.zipRight(
          Effect.sync(() =>
            state.people.get(personId)!.templates.set(template.templateId, {
              modelId: template.modelId,
              vector: template.vector
            })
          ),
          announce({ personId }, yes)
        ),
      addGuest: (eventId, personId, yes) =>
        Effect.zipRight(
          Effect.sync(() => state.events.get(eventId)!.guests.add(personId)),
          announce({ personId, eventId }, yes)
        ),
      setConsent: (personId, active, yes) =>
        Effect.zipRight(
          Effect.sync(() => {
            const person = state.people.get(personId)
            if (person !== undefined) person.active = active
          }),
          announce({ personId }, yes)
        ),
      erase: (personId, yes) =>
        Effect.zipRight(
          Effect.sync(() => {
            state.people.delete(personId)
            for (const event of state.events.values()) event.guests.delete(personId)
          }),
          announce({ personId }, yes)
        ),
      setAvailable: (up) => Ref.set(available, up),
      reads: Ref.get(reads)
    }

    return Context.make(GallerySource, source).pipe(Context.add(GallerySourceMemoryControl, control))
  })
)
