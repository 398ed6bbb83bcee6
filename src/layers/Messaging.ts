import { Layer } from "effect"
import { Consumers } from "../services/Consumers.js"
import { DeadLetters } from "../services/DeadLetters.js"
import { Destination } from "../services/Destination.js"
import { Listener } from "../services/Listener.js"
import { Outbox } from "../services/Outbox.js"
import { Queue } from "../services/Queue.js"
import { Relay } from "../services/Relay.js"
import { Workers } from "../services/Worker.js"

/**
 * What components use: the outbox to publish, the queue to enqueue work, the consumer registry
 * to subscribe handlers to topics, and the dead letters. The LISTEN connection comes with them.
 */
export const MessagingServicesLive = Layer.mergeAll(Outbox.layer, DeadLetters.layer, Consumers.layer, Listener.layer())
  .pipe(Layer.provideMerge(Queue.layer))

/** The outbox relay (delivering to the work queue) and the queue workers of the process. */
export const MessagingRunnersLive = Layer.mergeAll(
  Relay.layer.pipe(Layer.provide(Destination.layerQueue)),
  Workers.layer
)

/** Messaging services plus the loops that move messages; needs the schema migrated first. */
export const MessagingLive = MessagingRunnersLive.pipe(Layer.provideMerge(MessagingServicesLive))
