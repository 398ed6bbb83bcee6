import { Schema } from "effect"

/**
 * What changed in the galleries, as sent on the `gallery_changed` channel: a person's templates,
 * consent or existence (every gallery holding them), or one person's membership of one event.
 * Receivers reload what the change names from the database; the message carries no templates.
 */
export const GalleryChange = Schema.Union(
  Schema.Struct({ kind: Schema.Literal("person"), personId: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("membership"), eventId: Schema.String, personId: Schema.String })
)
export type GalleryChange = typeof GalleryChange.Type

/** The channel name of `pg_notify` until outbox events replace it. */
export const galleryChannel = "gallery_changed"

export const encodeGalleryChange = (change: GalleryChange): string => JSON.stringify(change)

export const decodeGalleryChange = Schema.decodeUnknownEither(Schema.parseJson(GalleryChange))
