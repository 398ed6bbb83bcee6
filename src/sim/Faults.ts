import { Duration, Effect, Either, ParseResult, Schema } from "effect"
import type { Rng } from "./Random.js"

/**
 * The fault schedule of a run: background rates for faults that happen to single requests, and
 * timed faults. A time is seconds from the start of the load (`12`) or a share of the run's
 * duration (`"40%"`), so one schedule fits runs of any length. Users pass their own as JSON
 * (`--faults file.json`); `defaultSchedule` is what the demo does without one.
 */
const At = Schema.Union(
  Schema.Number.pipe(Schema.nonNegative()),
  Schema.TemplateLiteral(Schema.Number, "%")
).annotations({ description: "seconds from the start, or a share of the duration such as \"40%\"" })
export type At = typeof At.Type

const Seconds = Schema.Number.pipe(Schema.positive())

export const ProviderFaultMode = Schema.Literal("refuse", "error", "hang", "slow", "rate-limit", "reset", "malformed")
export type ProviderFaultMode = typeof ProviderFaultMode.Type

export const KillService = Schema.Struct({
  kind: Schema.Literal("kill-service"),
  at: At,
  /** Seconds the instance stays dead before it is started again. */
  restartAfter: Schema.optionalWith(Seconds, { default: () => 1 }),
  /** Which instance (chaos runs several); unset: one at random. */
  instance: Schema.optional(Schema.Int.pipe(Schema.nonNegative()))
})

export const ProviderOutage = Schema.Struct({
  kind: Schema.Literal("provider-outage"),
  at: At,
  duration: Seconds,
  mode: Schema.optionalWith(ProviderFaultMode, { default: () => "refuse" as const })
})

export const TerminateDbConnections = Schema.Struct({
  kind: Schema.Literal("terminate-db-connections"),
  at: At
})

export const DeviceOffline = Schema.Struct({
  kind: Schema.Literal("device-offline"),
  at: At,
  duration: Seconds,
  /** Which kind of device loses its network; it buffers and uploads late when it reconnects. */
  device: Schema.optionalWith(Schema.Literal("gate", "kiosk"), { default: () => "gate" as const })
})

export const TimedFault = Schema.Union(KillService, ProviderOutage, TerminateDbConnections, DeviceOffline)
export type TimedFault = typeof TimedFault.Type

/** A fault that recurs every `every` seconds (with up to `jitter` of that period added or removed). */
export const RepeatedFault = Schema.Struct({
  every: Seconds,
  jitter: Schema.optionalWith(Schema.Number.pipe(Schema.between(0, 0.9)), { default: () => 0.3 }),
  /** The first occurrence; unset: one period after the start. */
  from: Schema.optional(At),
  fault: Schema.Union(
    KillService.pipe(Schema.omit("at")),
    ProviderOutage.pipe(Schema.omit("at")),
    TerminateDbConnections.pipe(Schema.omit("at")),
    DeviceOffline.pipe(Schema.omit("at"))
  )
})
export type RepeatedFault = typeof RepeatedFault.Type

const Rate = Schema.Number.pipe(Schema.between(0, 1))

export const FaultRates = Schema.Struct({
  /** Share of requests a device sends twice at once. */
  duplicate: Schema.optionalWith(Rate, { default: () => 0 }),
  /** Share of requests whose response the device loses after the server acted; it resends. */
  dropResponse: Schema.optionalWith(Rate, { default: () => 0 }),
  /** Share of requests the device gives up on after a few milliseconds, then resends. */
  timeout: Schema.optionalWith(Rate, { default: () => 0 }),
  /** Share of accepted batches a device uploads again after reconnecting. */
  resendBatch: Schema.optionalWith(Rate, { default: () => 0 })
})
export type FaultRates = typeof FaultRates.Type

export const FaultSchedule = Schema.Struct({
  rates: Schema.optionalWith(FaultRates, { default: () => FaultRates.make({}) }),
  events: Schema.optionalWith(Schema.Array(TimedFault), { default: () => [] }),
  repeat: Schema.optionalWith(Schema.Array(RepeatedFault), { default: () => [] })
})
export type FaultSchedule = typeof FaultSchedule.Type
export type FaultScheduleInput = typeof FaultSchedule.Encoded

/** Parses a schedule from JSON text, with an error that names the field. */
export const parseSchedule = (text: string): Either.Either<FaultSchedule, string> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return Either.left(`the fault schedule is not valid JSON: ${(error as Error).message}`)
  }
  return Schema.decodeUnknownEither(FaultSchedule)(json, { onExcessProperty: "error" }).pipe(
    Either.mapLeft((error) => `the fault schedule is invalid: ${ParseResult.TreeFormatter.formatErrorSync(error)}`)
  )
}

export const decodeSchedule = Schema.decodeUnknownSync(FaultSchedule)

/** Seconds from the start for a time given absolutely or as a share of `durationSeconds`. */
export const resolveAt = (at: At, durationSeconds: number): number =>
  typeof at === "number" ? at : (Number(at.slice(0, -1)) / 100) * durationSeconds

/**
 * What the demo does unless told otherwise: every kind of fault at least once, spread over the
 * run so that each happens while devices are busy, whatever the duration.
 */
export const defaultSchedule = (): FaultSchedule =>
  decodeSchedule({
    rates: { duplicate: 0.05, dropResponse: 0.05, timeout: 0.02, resendBatch: 0.5 },
    // Kiosks enroll during the first 40% of the run; doors open at 30% and people arrive until 80%.
    events: [
      { kind: "provider-outage", at: "12%", duration: 6, mode: "refuse" },
      { kind: "device-offline", at: "20%", duration: 4, device: "kiosk" },
      { kind: "kill-service", at: "30%", restartAfter: 1 },
      { kind: "device-offline", at: "40%", duration: 4, device: "gate" },
      { kind: "terminate-db-connections", at: "45%" },
      { kind: "provider-outage", at: "52%", duration: 5, mode: "error" },
      { kind: "device-offline", at: "62%", duration: 3, device: "gate" },
      { kind: "kill-service", at: "70%", restartAfter: 1 },
      { kind: "terminate-db-connections", at: "80%" }
    ]
  })

/** Chaos: no story, only load and faults; instances die often. */
export const chaosSchedule = (): FaultSchedule =>
  decodeSchedule({
    rates: { duplicate: 0.1, dropResponse: 0.1, timeout: 0.03, resendBatch: 0.5 },
    repeat: [
      { every: 4, from: 2, fault: { kind: "kill-service", restartAfter: 1 } },
      { every: 7, from: 5, fault: { kind: "terminate-db-connections" } },
      { every: 12, from: 3, fault: { kind: "provider-outage", duration: 4, mode: "refuse" } },
      { every: 15, from: "35%", fault: { kind: "device-offline", duration: 3, device: "gate" } }
    ]
  })

/** One fault at a concrete moment of the run. */
export interface PlannedFault {
  /** Milliseconds from the start of the load. */
  readonly atMs: number
  readonly fault: TimedFault
}

/**
 * The concrete faults of a run of `durationSeconds`: timed faults and the occurrences of repeated
 * ones, sorted by time. Faults past the end are dropped, and so are occurrences so late that their
 * effect (a restart, an outage) would outlast the run: the run ends with everything recovered.
 */
export const plan = (schedule: FaultSchedule, durationSeconds: number, rng: Rng): Array<PlannedFault> => {
  const planned: Array<PlannedFault> = []
  const add = (atSeconds: number, fault: TimedFault) => {
    const lasts = fault.kind === "kill-service" ? fault.restartAfter : "duration" in fault ? fault.duration : 0
    if (atSeconds >= 0 && atSeconds + lasts <= durationSeconds) {
      planned.push({ atMs: Math.round(atSeconds * 1000), fault })
    }
  }

  for (const fault of schedule.events) add(resolveAt(fault.at, durationSeconds), fault)

  for (const repeated of schedule.repeat) {
    let at = repeated.from === undefined ? repeated.every : resolveAt(repeated.from, durationSeconds)
    while (at < durationSeconds) {
      add(at, { ...repeated.fault, at } as TimedFault)
      at += repeated.every * (1 + repeated.jitter * (2 * rng.next() - 1))
    }
  }

  return planned.sort((a, b) => a.atMs - b.atMs)
}

/** A one-line description of a fault for the display and the report. */
export const describeFault = (fault: TimedFault): string => {
  switch (fault.kind) {
    case "kill-service":
      return `SIGKILL ${
        fault.instance === undefined ? "a service instance" : `instance ${fault.instance}`
      }, restart after ${fault.restartAfter}s`
    case "provider-outage":
      return `ticketing provider ${fault.mode} for ${fault.duration}s`
    case "terminate-db-connections":
      return "terminate the service's database connections"
    case "device-offline":
      return `a ${fault.device} offline for ${fault.duration}s`
  }
}

/**
 * Runs the planned faults against `inject` at their times, measured from now. Each fault runs in
 * its own fiber, so an outage that lasts does not delay the next fault. Completes when every
 * fault has run; a failing injection is reported through `onError` and does not stop the others.
 */
export const runPlan = <R>(
  planned: ReadonlyArray<PlannedFault>,
  inject: (fault: TimedFault) => Effect.Effect<void, unknown, R>,
  onError: (fault: TimedFault, error: unknown) => Effect.Effect<void> = () => Effect.void
): Effect.Effect<void, never, R> =>
  Effect.forEach(
    planned,
    ({ atMs, fault }) =>
      Effect.sleep(Duration.millis(atMs)).pipe(
        Effect.zipRight(inject(fault)),
        Effect.catchAllCause((cause) => onError(fault, cause))
      ),
    { concurrency: "unbounded", discard: true }
  )
