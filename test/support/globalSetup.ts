import { Effect, Exit, Scope } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import type { TestProject } from "vitest/node"
import { embeddedServer } from "../../src/layers/Database.js"

declare module "vitest" {
  export interface ProvidedContext {
    /** A server where each test file creates and drops its own database. */
    adminDatabaseUrl: string
  }
}

/**
 * Tests run against a real PostgreSQL: `TEST_DATABASE_URL` when set, otherwise an embedded server
 * started here once for the whole run and removed at its end.
 */
export default async function setup(project: TestProject) {
  const external = process.env.TEST_DATABASE_URL
  if (external !== undefined && external !== "") {
    project.provide("adminDatabaseUrl", external)
    return
  }

  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "gatehouse-test-"))
  // As root the server runs as the postgres user, which must be able to enter this folder.
  Fs.chmodSync(dir, 0o755)
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    Scope.extend(embeddedServer(Path.join(dir, "pg"), Crypto.randomBytes(12).toString("hex")), scope)
  )
  project.provide("adminDatabaseUrl", server.url("postgres"))

  return async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    Fs.rmSync(dir, { recursive: true, force: true })
  }
}
