/**
 * Retry delays for outbox delivery and queued jobs: exponential in the attempt number, capped,
 * with "equal jitter" (half fixed, half random) so that rows failing together spread out while
 * each delay stays at least half the nominal one.
 */
export interface BackoffPolicy {
  /** Nominal delay after the first failed attempt, in milliseconds. */
  readonly baseMs: number
  /** Largest nominal delay, in milliseconds. */
  readonly maxMs: number
}

/** Nominal (unjittered) delay after `attempt` failed attempts (attempt >= 1). */
export const nominalDelayMs = (policy: BackoffPolicy, attempt: number): number => {
  const exponent = Math.max(0, Math.min(attempt - 1, 52))
  return Math.min(policy.maxMs, policy.baseMs * 2 ** exponent)
}

/**
 * Delay before the next attempt after `attempt` failed attempts, in whole milliseconds, within
 * [nominal / 2, nominal]. `random` is a number in [0, 1).
 */
export const retryDelayMs = (policy: BackoffPolicy, attempt: number, random: number): number => {
  const nominal = nominalDelayMs(policy, attempt)
  const half = nominal / 2
  return Math.round(half + half * Math.min(Math.max(random, 0), 1))
}

/**
 * The longest time between a message's first attempt and its last one: the sum of the largest
 * delays over `maxAttempts` attempts. De-duplication records (the inbox) must be kept longer.
 */
export const redeliveryHorizonMs = (policy: BackoffPolicy, maxAttempts: number): number => {
  let total = 0
  for (let attempt = 1; attempt < maxAttempts; attempt++) total += nominalDelayMs(policy, attempt)
  return total
}
