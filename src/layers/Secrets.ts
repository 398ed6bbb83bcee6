import { Console, Context, Data, Effect, Layer, Option, Redacted } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { AppConfig } from "./Config.js"

export class SecretsUnavailable extends Data.TaggedError("SecretsUnavailable")<{
  readonly path: string
  readonly cause: unknown
}> {
  override get message() {
    return `cannot read or create the secrets file ${this.path}`
  }
}

export interface SecretsShape {
  readonly adminKey: Redacted.Redacted<string>
  /** 32 bytes that wrap every person's data key. */
  readonly masterKey: Redacted.Redacted<Buffer>
  /** Password of the embedded PostgreSQL server's superuser. */
  readonly embeddedDbPassword: Redacted.Redacted<string>
}

interface SecretsFile {
  readonly adminKey: string
  readonly masterKey: string
  readonly embeddedDbPassword: string
}

const generate = (): SecretsFile => ({
  adminKey: `gh_admin_${Crypto.randomBytes(24).toString("base64url")}`,
  masterKey: Crypto.randomBytes(32).toString("base64"),
  embeddedDbPassword: Crypto.randomBytes(18).toString("base64url")
})

/**
 * Reads the secrets file from the data directory, creating it with owner-only permissions on
 * first use. `created` tells whether this call wrote it, so the admin key is shown only once.
 */
const loadOrCreate = (dataDir: string) =>
  Effect.try({
    try: () => {
      const path = Path.resolve(dataDir, "secrets.json")
      Fs.mkdirSync(Path.dirname(path), { recursive: true })
      try {
        const fresh = generate()
        Fs.writeFileSync(path, JSON.stringify(fresh, null, 2) + "\n", { mode: 0o600, flag: "wx" })
        return { file: fresh, created: true }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
        return { file: JSON.parse(Fs.readFileSync(path, "utf8")) as SecretsFile, created: false }
      }
    },
    catch: (cause) => new SecretsUnavailable({ path: Path.resolve(dataDir, "secrets.json"), cause })
  })

const decodeMasterKey = (base64: string) =>
  Effect.suspend(() => {
    const bytes = Buffer.from(base64, "base64")
    return bytes.length === 32
      ? Effect.succeed(Redacted.make(bytes))
      : Effect.dieMessage("MASTER_KEY must be the base64 encoding of exactly 32 bytes")
  })

/** Admin key, master key and embedded database password: from configuration, else generated once. */
export class Secrets extends Context.Tag("gatehouse/Secrets")<Secrets, SecretsShape>() {
  static readonly layer = Layer.effect(
    Secrets,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const { created, file } = yield* loadOrCreate(config.dataDir)

      if (created && Option.isNone(config.adminKey)) {
        yield* Console.log(
          [
            "",
            "  Gatehouse generated an admin API key for this data directory. It is shown only once:",
            "",
            `    ${file.adminKey}`,
            "",
            "  It is kept in the data directory's secrets.json (owner-only). Set ADMIN_KEY to use your own.",
            ""
          ].join("\n")
        )
      }

      return {
        adminKey: Option.getOrElse(config.adminKey, () => Redacted.make(file.adminKey)) as Redacted.Redacted<string>,
        masterKey: yield* decodeMasterKey(
          Option.match(config.masterKey, { onNone: () => file.masterKey, onSome: Redacted.value<string> })
        ),
        embeddedDbPassword: Redacted.make(file.embeddedDbPassword)
      }
    })
  )

  /** Fixed secrets for tests: nothing touches the file system. */
  static readonly layerTest = Layer.succeed(Secrets, {
    adminKey: Redacted.make("gh_admin_test"),
    masterKey: Redacted.make(Buffer.alloc(32, 7)),
    embeddedDbPassword: Redacted.make("unused")
  })
}
