import { Effect, Exit, Scope } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import Pg from "pg"
import { embeddedServer } from "../../src/layers/Database.js"

/** A PostgreSQL server on which the bench creates (and drops) its own databases. */
export interface BenchServer {
  /** A URL on the server's maintenance database, for CREATE and DROP DATABASE. */
  readonly adminUrl: string
  readonly kind: "external" | "embedded"
  readonly close: () => Promise<void>
}

/**
 * `TEST_DATABASE_URL` or `DATABASE_URL` when set (the bench only creates and drops databases of its
 * own there), else an embedded server in a temporary folder, removed at the end.
 */
export const openServer = async (): Promise<BenchServer> => {
  const external = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL
  if (external !== undefined && external !== "") {
    return { adminUrl: external, kind: "external", close: async () => {} }
  }
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "gatehouse-bench-"))
  // As root the server runs as the postgres user, which must be able to enter this folder.
  Fs.chmodSync(dir, 0o755)
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    Scope.extend(embeddedServer(Path.join(dir, "pg"), Crypto.randomBytes(12).toString("hex")), scope)
  )
  return {
    adminUrl: server.url("postgres"),
    kind: "embedded",
    close: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      Fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

const withClient = async <A>(url: string, run: (client: Pg.Client) => Promise<A>): Promise<A> => {
  const client = new Pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await run(client)
  } finally {
    await client.end()
  }
}

export interface BenchDatabase {
  readonly name: string
  readonly url: string
  readonly drop: () => Promise<void>
}

/** An empty database on the bench server, named after the scenario. */
export const createDatabase = async (server: BenchServer, scenario: string): Promise<BenchDatabase> => {
  const name = `gatehouse_bench_${scenario}_${Crypto.randomBytes(4).toString("hex")}`
  await withClient(server.adminUrl, (client) => client.query(`CREATE DATABASE ${name}`))
  const url = new URL(server.adminUrl)
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    drop: () =>
      withClient(server.adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(
        () => undefined
      )
  }
}

/** Settings that decide write throughput, reported beside the figures. */
const reported = [
  "shared_buffers",
  "synchronous_commit",
  "fsync",
  "full_page_writes",
  "wal_sync_method",
  "wal_level",
  "commit_delay",
  "max_wal_size",
  "checkpoint_timeout",
  "work_mem",
  "max_connections"
]

export interface ServerSettings {
  readonly version: string
  readonly settings: ReadonlyArray<{ readonly name: string; readonly value: string }>
}

export const serverSettings = (url: string): Promise<ServerSettings> =>
  withClient(url, async (client) => {
    const version = (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version
    const rows = await client.query<{ name: string; setting: string; unit: string | null }>(
      "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1) ORDER BY name",
      [reported]
    )
    const value = (row: { setting: string; unit: string | null }) => {
      if (row.unit === "8kB") return `${(Number(row.setting) * 8) / 1024} MB`
      if (row.unit === "kB") return `${Number(row.setting) / 1024} MB`
      if (row.unit === "MB") return `${row.setting} MB`
      return row.unit === null ? row.setting : `${row.setting} ${row.unit}`
    }
    return { version, settings: rows.rows.map((row) => ({ name: row.name, value: value(row) })) }
  })

/** Runs `sql` on `url` with a short-lived client. */
export const exec = (url: string, sql: string, params: Array<unknown> = []) =>
  withClient(url, (client) => client.query(sql, params))
