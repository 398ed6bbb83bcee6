import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer } from "effect"
import * as Crypto from "node:crypto"
import { channels } from "./Listener.js"

/** A claimed job. `token` fences every later write about it: a newer claim makes it stale. */
export interface Job {
  readonly id: number
  readonly queue: string
  readonly topic: string
  readonly messageId: string
  readonly payload: unknown
  /** 1 on the first claim; claims cut short by a crash count too. */
  readonly attempt: number
  readonly token: number
}

/** What a write about a claimed job names: the job and the fencing token of the claim. */
export type Lease = Pick<Job, "id" | "token">

export interface NewJob {
  readonly queue: string
  readonly topic: string
  readonly payload: unknown
  /** The sender's message id, the inbox key of consumers. Default: a random UUID. */
  readonly messageId?: string | undefined
  /** Milliseconds, on the database clock, before the job may run. */
  readonly delayMs?: number | undefined
}

export interface PublishedMessage {
  readonly messageId: string
  readonly topic: string
  /** JSON text. */
  readonly payload: string
}

export interface JobFailure {
  readonly lease: Lease
  readonly error: string
}

export interface QueueShape {
  /**
   * Adds jobs, in the caller's transaction when there is one: a rolled-back transaction leaves
   * no job. Wakes the workers of the queues at commit (`pg_notify` in the same statement).
   */
  readonly enqueue: (jobs: ReadonlyArray<NewJob>) => Effect.Effect<void, SqlError>
  /**
   * Enqueues one job per queue subscribed to each message's topic, in the caller's transaction,
   * and wakes those queues' workers at commit. A topic nobody subscribes to reaches nobody.
   * Payloads are JSON text. Returns the number of jobs created.
   */
  readonly publish: (messages: ReadonlyArray<PublishedMessage>) => Effect.Effect<number, SqlError>
  /** Persists that `queue` receives a job for every message published on `topic`. */
  readonly subscribe: (topic: string, queue: string) => Effect.Effect<void, SqlError>
  /**
   * Claims up to `limit` ready jobs of `queues` (`FOR UPDATE SKIP LOCKED`), oldest `run_at` first,
   * each with a lease of `leaseMs` on the database clock and a new fencing token. Its cost follows
   * the batch, not the backlog (`claim_jobs`, migration 210).
   */
  readonly claim: (options: {
    readonly queues: ReadonlyArray<string>
    readonly limit: number
    readonly leaseMs: number
    readonly owner: string
  }) => Effect.Effect<ReadonlyArray<Job>, SqlError>
  /**
   * Extends the leases still held. Rows that another transaction has locked are skipped rather
   * than waited for: the worker's own completing transaction holds them, which protects them.
   * Returns the ids extended.
   */
  readonly extend: (leases: ReadonlyArray<Lease>, leaseMs: number) => Effect.Effect<ReadonlyArray<number>, SqlError>
  /**
   * Inside a transaction: locks the jobs still held under these tokens until commit, so no lease
   * takeover can happen before the outcome is written. Returns the ids held; the others were
   * taken over and must be neither completed nor acted upon.
   */
  readonly lock: (leases: ReadonlyArray<Lease>) => Effect.Effect<ReadonlySet<number>, SqlError>
  /** Deletes the jobs still held under these tokens. Returns the ids completed. */
  readonly complete: (leases: ReadonlyArray<Lease>) => Effect.Effect<ReadonlyArray<number>, SqlError>
  /** Makes held jobs ready again after their delay, keeping the error. Returns the ids rescheduled. */
  readonly retry: (
    retries: ReadonlyArray<JobFailure & { readonly delayMs: number }>
  ) => Effect.Effect<ReadonlyArray<number>, SqlError>
  /** Moves held jobs to the dead letters with their error. Returns the ids parked. */
  readonly park: (failures: ReadonlyArray<JobFailure>) => Effect.Effect<ReadonlyArray<number>, SqlError>
  /**
   * Gives held jobs back at once, without counting the attempt (graceful shutdown), and wakes the
   * workers of every process. Returns the ids released.
   */
  readonly release: (leases: ReadonlyArray<Lease>) => Effect.Effect<ReadonlyArray<number>, SqlError>
  /**
   * Frees jobs whose lease expired (their worker died or stalled), or parks them when they have
   * had `maxAttempts` attempts. Rows locked by a running transaction are left alone.
   */
  readonly reapExpired: (
    options: { readonly maxAttempts: number; readonly limit: number }
  ) => Effect.Effect<{ readonly released: number; readonly parked: number }, SqlError>
}

const ids = (leases: ReadonlyArray<Lease>) => leases.map((l) => l.id)
const tokens = (leases: ReadonlyArray<Lease>) => leases.map((l) => l.token)

/** The PostgreSQL work queue. Every write about a claimed job checks its fencing token in the same statement. */
export class Queue extends Context.Tag("gatehouse/Queue")<Queue, QueueShape>() {
  static readonly make = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const enqueue = (jobs: ReadonlyArray<NewJob>) =>
      jobs.length === 0 ? Effect.void : sql`
        WITH inserted AS (
          INSERT INTO jobs (queue, topic, message_id, payload, run_at)
          SELECT j.queue, j.topic, j.message_id, j.payload::jsonb, now() + j.delay_ms * interval '1 millisecond'
          FROM unnest(
            ${jobs.map((j) => j.queue)}::text[],
            ${jobs.map((j) => j.topic)}::text[],
            ${jobs.map((j) => j.messageId ?? Crypto.randomUUID())}::text[],
            ${jobs.map((j) => JSON.stringify(j.payload ?? null))}::text[],
            ${jobs.map((j) => j.delayMs ?? 0)}::float8[]
          ) AS j(queue, topic, message_id, payload, delay_ms)
          RETURNING queue
        )
        SELECT pg_notify(${channels.jobs}, queue) FROM (SELECT DISTINCT queue FROM inserted) AS q
      `.pipe(Effect.asVoid, Effect.withSpan("Queue.enqueue"))

    const publish = (messages: ReadonlyArray<PublishedMessage>) =>
      messages.length === 0 ? Effect.succeed(0) : sql<{ jobs: number }>`
        WITH inserted AS (
          INSERT INTO jobs (queue, topic, message_id, payload)
          SELECT s.queue, m.topic, m.message_id, m.payload::jsonb
          FROM unnest(
            ${messages.map((m) => m.topic)}::text[],
            ${messages.map((m) => m.messageId)}::text[],
            ${messages.map((m) => m.payload)}::text[]
          ) AS m(topic, message_id, payload)
          JOIN queue_subscriptions AS s ON s.topic = m.topic
          RETURNING queue
        ), woken AS (
          SELECT pg_notify(${channels.jobs}, queue) FROM (SELECT DISTINCT queue FROM inserted) AS q
        )
        SELECT (SELECT count(*) FROM inserted)::int AS jobs, (SELECT count(*) FROM woken) AS notified
      `.pipe(Effect.map((rows) => rows[0]?.jobs ?? 0), Effect.withSpan("Queue.publish"))

    const subscribe = (topic: string, queue: string) =>
      sql`INSERT INTO queue_subscriptions (topic, queue) VALUES (${topic}, ${queue}) ON CONFLICT DO NOTHING`.pipe(
        Effect.asVoid
      )

    const claim = (options: {
      readonly queues: ReadonlyArray<string>
      readonly limit: number
      readonly leaseMs: number
      readonly owner: string
    }) =>
      options.queues.length === 0 ? Effect.succeed([]) : sql<Job>`
        SELECT id, queue, topic, message_id AS "messageId", payload, attempt, token
        FROM claim_jobs(${options.queues}::text[], ${options.limit}::integer, ${options.leaseMs}::float8, ${options.owner})
      `.pipe(Effect.withSpan("Queue.claim"))

    const extend = (leases: ReadonlyArray<Lease>, leaseMs: number) =>
      leases.length === 0 ? Effect.succeed([]) : sql<{ id: number }>`
        UPDATE jobs AS j SET leased_until = now() + ${leaseMs} * interval '1 millisecond'
        FROM (
          SELECT jobs.id FROM jobs
          JOIN unnest(${ids(leases)}::bigint[], ${tokens(leases)}::bigint[]) AS l(id, token)
            ON jobs.id = l.id AND jobs.lease_token = l.token
          FOR UPDATE OF jobs SKIP LOCKED
        ) AS held
        WHERE j.id = held.id
        RETURNING j.id
      `.pipe(Effect.map((rows) => rows.map((r) => r.id)))

    const lock = (leases: ReadonlyArray<Lease>) =>
      leases.length === 0 ? Effect.succeed(new Set<number>()) : sql<{ id: number }>`
        SELECT jobs.id FROM jobs
        JOIN unnest(${ids(leases)}::bigint[], ${tokens(leases)}::bigint[]) AS l(id, token)
          ON jobs.id = l.id AND jobs.lease_token = l.token
        FOR UPDATE OF jobs
      `.pipe(Effect.map((rows) => new Set(rows.map((r) => r.id))))

    const complete = (leases: ReadonlyArray<Lease>) =>
      leases.length === 0 ? Effect.succeed([]) : sql<{ id: number }>`
        DELETE FROM jobs USING unnest(${ids(leases)}::bigint[], ${tokens(leases)}::bigint[]) AS l(id, token)
        WHERE jobs.id = l.id AND jobs.lease_token = l.token
        RETURNING jobs.id
      `.pipe(Effect.map((rows) => rows.map((r) => r.id)))

    const retry = (retries: ReadonlyArray<JobFailure & { readonly delayMs: number }>) =>
      retries.length === 0 ? Effect.succeed([]) : sql<{ id: number }>`
        UPDATE jobs AS j
        SET leased_until = NULL, leased_by = NULL, last_error = r.error,
            run_at = now() + r.delay_ms * interval '1 millisecond'
        FROM unnest(
          ${retries.map((r) => r.lease.id)}::bigint[],
          ${retries.map((r) => r.lease.token)}::bigint[],
          ${retries.map((r) => r.error)}::text[],
          ${retries.map((r) => r.delayMs)}::float8[]
        ) AS r(id, token, error, delay_ms)
        WHERE j.id = r.id AND j.lease_token = r.token
        RETURNING j.id
      `.pipe(Effect.map((rows) => rows.map((r) => r.id)))

    const park = (failures: ReadonlyArray<JobFailure>) =>
      failures.length === 0 ? Effect.succeed([]) : sql<{ id: number }>`
        WITH parked AS (
          DELETE FROM jobs USING unnest(
            ${failures.map((f) => f.lease.id)}::bigint[],
            ${failures.map((f) => f.lease.token)}::bigint[],
            ${failures.map((f) => f.error)}::text[]
          ) AS f(id, token, error)
          WHERE jobs.id = f.id AND jobs.lease_token = f.token
          RETURNING jobs.*, f.error
        ), moved AS (
          INSERT INTO dead_letters (source, queue, topic, message_id, payload, attempts, last_error, created_at)
          SELECT 'queue', queue, topic, message_id, payload, attempts, error, created_at FROM parked
        )
        SELECT id FROM parked
      `.pipe(Effect.map((rows) => rows.map((r) => r.id)))

    const release = (leases: ReadonlyArray<Lease>) =>
      leases.length === 0 ? Effect.succeed([]) : sql<{ id: number }>`
        WITH released AS (
          UPDATE jobs AS j
          SET leased_until = NULL, leased_by = NULL, attempts = greatest(j.attempts - 1, 0), run_at = now()
          FROM unnest(${ids(leases)}::bigint[], ${tokens(leases)}::bigint[]) AS l(id, token)
          WHERE j.id = l.id AND j.lease_token = l.token AND j.leased_until IS NOT NULL
          RETURNING j.id, j.queue
        ), woken AS (
          SELECT pg_notify(${channels.jobs}, queue) FROM (SELECT DISTINCT queue FROM released) AS q
        )
        SELECT id FROM released, (SELECT count(*) FROM woken) AS w
      `.pipe(Effect.map((rows) => rows.map((r) => r.id)))

    const reapExpired = (options: { readonly maxAttempts: number; readonly limit: number }) =>
      sql.withTransaction(Effect.gen(function*() {
        const expired = yield* sql<{ id: number; token: number; attempts: number; leased_by: string | null }>`
          SELECT id, lease_token AS token, attempts, leased_by FROM jobs
          WHERE leased_until < now()
          ORDER BY leased_until
          LIMIT ${options.limit}
          FOR UPDATE SKIP LOCKED
        `
        const exhausted = expired.filter((j) => j.attempts >= options.maxAttempts)
        const parked = yield* park(exhausted.map((j) => ({
          lease: j,
          error: `lease expired ${j.attempts} times; last held by ${j.leased_by ?? "unknown"}`
        })))
        const again = expired.filter((j) => j.attempts < options.maxAttempts)
        const released = again.length === 0 ? [] : yield* sql<{ id: number }>`
          WITH freed AS (
            UPDATE jobs SET leased_until = NULL, leased_by = NULL, run_at = now(),
              last_error = 'lease expired; last held by ' || coalesce(leased_by, 'unknown')
            WHERE id = ANY(${ids(again)}::bigint[])
            RETURNING id, queue
          ), woken AS (
            SELECT pg_notify(${channels.jobs}, queue) FROM (SELECT DISTINCT queue FROM freed) AS q
          )
          SELECT id FROM freed, (SELECT count(*) FROM woken) AS w
        `
        return { released: released.length, parked: parked.length }
      }))

    return {
      enqueue,
      publish,
      subscribe,
      claim,
      extend,
      lock,
      complete,
      retry,
      park,
      release,
      reapExpired
    } satisfies QueueShape
  })

  static readonly layer = Layer.effect(Queue, Queue.make)
}
