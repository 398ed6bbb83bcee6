import { HttpApiBuilder } from "@effect/platform"
import { Effect } from "effect"
import { DeadLetters } from "../../services/DeadLetters.js"
import { GatehouseApi } from "../Api.js"

export const DeadLettersHandlers = HttpApiBuilder.group(
  GatehouseApi,
  "deadLetters",
  (handlers) =>
    Effect.gen(function*() {
      const deadLetters = yield* DeadLetters

      return handlers
        .handle("list", ({ urlParams }) =>
          Effect.gen(function*() {
            const limit = urlParams.limit ?? 50
            const page = yield* deadLetters.list({
              limit,
              before: urlParams.before,
              source: urlParams.source,
              topic: urlParams.topic
            })
            const last = page.items.at(-1)
            return {
              items: page.items,
              total: page.total,
              ...(page.items.length === limit && last !== undefined ? { next: last.id } : {})
            }
          }))
        .handle("get", ({ path }) => deadLetters.get(path.id))
        .handle("retry", ({ path }) => Effect.map(deadLetters.retry(path.id), (r) => ({ id: path.id, ...r })))
        .handle("discard", ({ path }) => deadLetters.discard(path.id))
    })
)
