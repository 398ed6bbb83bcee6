import { Layer } from "effect"
import { Effect } from "effect"
import { AttemptLog } from "../services/AttemptLog.js"
import * as GallerySourceSql from "../services/GallerySourceSql.js"
import { Matching } from "../services/Matching.js"
import { AppConfig } from "./Config.js"

/** The matching component: in-memory galleries over the database, and the attempt log. */
export const MatchingLive = Layer.unwrapEffect(Effect.map(AppConfig, (config) =>
  Matching.layer.pipe(
    Layer.provide(GallerySourceSql.layer({ holdAfterEndMs: config.matchingGraceMs })),
    Layer.provide(AttemptLog.layer())
  )))
