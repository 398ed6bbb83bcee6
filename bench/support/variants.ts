import { summarize, type Summary } from "./stats.js"

/** Per-round measures of named variants at one level (a concurrency), kept in round order. */
export class Measures {
  private readonly values = new Map<string, Map<string, Array<number>>>()

  add(level: string, variant: string, measure: string, value: number): void {
    const key = `${variant}\u0000${measure}`
    let byKey = this.values.get(level)
    if (byKey === undefined) this.values.set(level, byKey = new Map())
    const list = byKey.get(key) ?? []
    list.push(value)
    byKey.set(key, list)
  }

  get(level: string, variant: string, measure: string): ReadonlyArray<number> {
    return this.values.get(level)?.get(`${variant}\u0000${measure}`) ?? []
  }

  summary(level: string, variant: string, measure: string): Summary {
    const values = this.get(level, variant, measure)
    return values.length === 0 ? { median: NaN, min: NaN, max: NaN, rounds: 0 } : summarize(values)
  }

  max(level: string, variant: string, measure: string): number {
    const values = this.get(level, variant, measure)
    return values.length === 0 ? NaN : Math.max(...values)
  }
}
