import { Context, Effect, Layer, Ref } from "effect"

export type ComponentStatus = "starting" | "up" | "degraded" | "down"

export interface ComponentState {
  readonly status: ComponentStatus
  readonly detail?: string | undefined
  readonly since: string
}

export interface HealthShape {
  /** Records the state of one component; the first call registers it. */
  readonly set: (component: string, status: ComponentStatus, detail?: string) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<Readonly<Record<string, ComponentState>>>
  /**
   * Ready when every registered component is up or degraded. A degraded component (the
   * ticketing provider unreachable, say) keeps the service ready: the others work on.
   */
  readonly ready: Effect.Effect<boolean>
}

/** Each component's state, for `/health/ready` and operators. */
export class Health extends Context.Tag("gatehouse/Health")<Health, HealthShape>() {
  static readonly layer = Layer.effect(
    Health,
    Effect.gen(function*() {
      const states = yield* Ref.make<Record<string, ComponentState>>({})

      const set = (component: string, status: ComponentStatus, detail?: string) =>
        Ref.update(states, (all) => {
          const previous = all[component]
          if (previous?.status === status && previous.detail === detail) return all
          return { ...all, [component]: { status, detail, since: new Date().toISOString() } }
        })

      const ready = Effect.map(
        Ref.get(states),
        (all) =>
          Object.keys(all).length > 0 && Object.values(all).every((s) => s.status === "up" || s.status === "degraded")
      )

      return { set, snapshot: Ref.get(states), ready }
    })
  )
}
