/**
 * The plain node-postgres baselines of the consumer scenario: the same rows the Gatehouse handler
 * writes (a domain row, an outbox event, and the processed-message record that makes it
 * exactly-once), written by hand with `pg`, without a queue.
 */
import { Effect } from "effect"
import Pg from "pg"

/** Tables of the bench only, created in its own databases. */
export const benchTables = `
  CREATE TABLE IF NOT EXISTS bench_domain (
    message_id text PRIMARY KEY,
    amount integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS bench_base_processed (
    message_id text PRIMARY KEY,
    outcome jsonb NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS bench_base_outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS bench_insert (
    id bigserial PRIMARY KEY,
    key text,
    size integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );
`

export interface BaselineArgs {
  readonly url: string
  readonly run: string
  readonly messages: number
  readonly concurrency: number
  /** Messages per transaction; 1 is one transaction per message. */
  readonly batch: number
}

const perMessage = async (client: Pg.PoolClient, ids: ReadonlyArray<string>) => {
  const id = ids[0]!
  await client.query("BEGIN")
  await client.query("INSERT INTO bench_base_processed (message_id, outcome) VALUES ($1, $2)", [id, "{\"ok\":true}"])
  await client.query("INSERT INTO bench_domain (message_id, amount) VALUES ($1, $2)", [id, 1])
  await client.query("INSERT INTO bench_base_outbox (topic, payload) VALUES ($1, $2)", [
    "bench.done",
    JSON.stringify({ messageId: id })
  ])
  await client.query("COMMIT")
}

const batched = async (client: Pg.PoolClient, ids: ReadonlyArray<string>) => {
  await client.query("BEGIN")
  await client.query(
    "INSERT INTO bench_base_processed (message_id, outcome) SELECT unnest($1::text[]), '{\"ok\":true}'::jsonb",
    [ids]
  )
  await client.query("INSERT INTO bench_domain (message_id, amount) SELECT unnest($1::text[]), 1", [ids])
  await client.query(
    "INSERT INTO bench_base_outbox (topic, payload) SELECT 'bench.done', jsonb_build_object('messageId', id) FROM unnest($1::text[]) AS id",
    [ids]
  )
  await client.query("COMMIT")
}

/** Writes `messages` messages with `concurrency` connections; answers the elapsed milliseconds. */
export const runBaseline = (args: BaselineArgs) =>
  Effect.promise(async () => {
    const pool = new Pg.Pool({ connectionString: args.url, max: args.concurrency })
    const clients = await Promise.all(Array.from({ length: args.concurrency }, () => pool.connect()))
    const write = args.batch === 1 ? perMessage : batched
    let next = 0
    const started = performance.now()
    await Promise.all(clients.map(async (client) => {
      while (next < args.messages) {
        const from = next
        next = Math.min(args.messages, next + args.batch)
        const ids = Array.from({ length: next - from }, (_, i) => `${args.run}-${from + i}`)
        await write(client, ids)
      }
    }))
    const elapsedMs = performance.now() - started
    for (const client of clients) client.release()
    await pool.end()
    return { elapsedMs }
  })
