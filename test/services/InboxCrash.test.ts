import { describe, expect, layer } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Random } from "effect"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Path from "node:path"
import * as Readline from "node:readline"
import { Inbox } from "../../src/services/Inbox.js"
import { TestDatabase, TestDatabaseLive } from "../support/Database.js"
import { AmountInvalid, Applied, apply, createLedger, effectsOf } from "../support/Inbox.js"

const childEntry = Path.join(import.meta.dirname, "..", "support", "inboxChild.ts")

const TestLive = Layer.effectDiscard(createLedger).pipe(
  Layer.provideMerge(Inbox.layerWith({ claimLease: Duration.millis(1000), waitFor: Duration.seconds(30) })),
  Layer.provideMerge(TestDatabaseLive)
)

/** A child process delivering `keys` through its own inbox; the scope SIGKILLs it if still alive. */
const spawnChild = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.flatMap(TestDatabase, (db) =>
      Effect.sync(() => {
        const child = ChildProcess.spawn(process.execPath, ["--import", "tsx", childEntry], {
          env: { ...process.env, DATABASE_URL: db.url, ...env },
          stdio: ["ignore", "pipe", "inherit"]
        })
        const lines: Array<string> = []
        const waiters: Array<() => void> = []
        Readline.createInterface({ input: child.stdout! }).on("line", (line) => {
          lines.push(line)
          waiters.splice(0).forEach((wake) => wake())
        })
        child.on("exit", () => waiters.splice(0).forEach((wake) => wake()))
        /** Waits until the child printed `line` (fails if it exits first). */
        const printed = (line: string) =>
          Effect.async<void, Error>((resume) => {
            const check = () => {
              if (lines.includes(line)) resume(Effect.void)
              else if (child.exitCode !== null || child.signalCode !== null) {
                resume(Effect.fail(new Error(`child exited before printing ${line}`)))
              } else waiters.push(check)
            }
            check()
          })
        const killed = Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill("SIGKILL")
        })
        return { child, lines, printed, killed }
      })),
    ({ killed }) => killed
  )

describe("Inbox crash recovery", () => {
  layer(TestLive, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.scoped("takes over the claim of a SIGKILLed holder after the lease, with one effect", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const scope = `crash:${Crypto.randomUUID()}`
        const child = yield* spawnChild({ SCOPE: scope, KEYS: "k", LEASE_MS: "1000", HOLD: "1" })
        yield* child.printed("holding k")

        yield* child.killed
        const taken = yield* inbox.receive(
          { scope, key: "k", payload: { key: "k" } },
          apply(scope, "k", 1),
          { success: Applied, failure: AmountInvalid }
        )

        const record = yield* inbox.lookup(scope, "k")
        expect(taken.replayed).toBe(false)
        expect(Option.map(record, (r) => [r.status, r.attempts])).toEqual(Option.some(["succeeded", 2]))
        expect(yield* effectsOf(scope)).toEqual({ k: 1 })
      }))

    it.scoped("applies every message once after a holder is SIGKILLed at random moments", () =>
      Effect.gen(function*() {
        const inbox = yield* Inbox
        const keys = Array.from({ length: 8 }, (_, i) => `k${i}`)

        for (let round = 0; round < 2; round++) {
          const scope = `crash:${Crypto.randomUUID()}`
          const child = yield* spawnChild({ SCOPE: scope, KEYS: keys.join(","), LEASE_MS: "500" })
          yield* child.printed("ready")
          // Not a timing assertion: a random delay picks where in its work the child dies.
          yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(0, 300)))
          yield* child.killed

          const receipts = yield* Effect.forEach(keys, (key) =>
            inbox.receive({ scope, key, payload: { key } }, apply(scope, key, 1), {
              success: Applied,
              failure: AmountInvalid
            }), { concurrency: 4 })

          const doneByChild = child.lines.filter((l) =>
            l.startsWith("done ")
          ).length
          expect(
            receipts.filter((r) =>
              r.replayed
            ).length
          ).toBeGreaterThanOrEqual(doneByChild)
          expect(yield* effectsOf(scope)).toEqual(Object.fromEntries(keys.map((k) => [k, 1])))
        }
      }))
  })
})
