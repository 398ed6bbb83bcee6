/** Small statistics for benchmark rounds: medians, spreads and percentiles. */

export const sorted = (values: ReadonlyArray<number>): Array<number> => [...values].sort((a, b) => a - b)

/** The q-quantile (0..1) of `values` with linear interpolation; NaN for no values. */
export const quantile = (values: ReadonlyArray<number>, q: number): number => {
  if (values.length === 0) return NaN
  const s = sorted(values)
  const position = (s.length - 1) * q
  const low = Math.floor(position)
  const high = Math.ceil(position)
  return s[low]! + (s[high]! - s[low]!) * (position - low)
}

export const median = (values: ReadonlyArray<number>): number => quantile(values, 0.5)

/** Median and spread (min and max) of one measure across rounds. */
export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly rounds: number
}

export const summarize = (values: ReadonlyArray<number>): Summary => ({
  median: median(values),
  min: Math.min(...values),
  max: Math.max(...values),
  rounds: values.length
})

/**
 * Ratio of a variant to its baseline, paired round by round: on a shared, noisy machine the two
 * measures of one round saw the same background load, so the median of per-round ratios is steadier
 * than the ratio of medians.
 */
export const pairedRatio = (variant: ReadonlyArray<number>, baseline: ReadonlyArray<number>): Summary => {
  const ratios: Array<number> = []
  for (let i = 0; i < Math.min(variant.length, baseline.length); i++) {
    if (baseline[i]! > 0) ratios.push(variant[i]! / baseline[i]!)
  }
  return ratios.length === 0 ? { median: NaN, min: NaN, max: NaN, rounds: 0 } : summarize(ratios)
}

const digits = (value: number) => {
  const abs = Math.abs(value)
  return abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
}

/** A number with a precision that fits its size, thousands separated. */
export const fmt = (value: number, fractionDigits?: number): string => {
  if (!Number.isFinite(value)) return "n/a"
  const d = fractionDigits ?? digits(value)
  return value.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d })
}

/** `median (min–max)`. */
export const fmtSummary = (s: Summary, fractionDigits?: number): string =>
  s.rounds === 0 ? "n/a" : s.rounds === 1
    ? fmt(s.median, fractionDigits)
    : `${fmt(s.median, fractionDigits)} (${fmt(s.min, fractionDigits)}–${fmt(s.max, fractionDigits)})`

/** `×0.83 (0.80–0.90)`. */
export const fmtRatio = (s: Summary): string =>
  s.rounds === 0 ? "n/a" : s.rounds === 1
    ? `×${fmt(s.median, 2)}`
    : `×${fmt(s.median, 2)} (${fmt(s.min, 2)}–${fmt(s.max, 2)})`

export const mib = (bytes: number): number => bytes / (1024 * 1024)
