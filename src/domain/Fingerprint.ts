import { Data } from "effect"
import * as Crypto from "node:crypto"

/**
 * The payload holds something JSON cannot carry (NaN, Infinity, a bigint, a function, a
 * symbol, a Map, a cycle): two copies of it could not be compared through their JSON form.
 */
export class PayloadNotJson extends Data.TaggedError("PayloadNotJson")<{
  readonly path: string
  readonly reason: string
}> {
  override get message() {
    return `${this.path || "(payload)"}: ${this.reason}`
  }
}

const isPlainObject = (value: object): value is Record<string, unknown> => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

const fail = (path: string, reason: string): never => {
  throw new PayloadNotJson({ path, reason })
}

const encode = (value: unknown, path: string, seen: Set<object>): string | undefined => {
  switch (typeof value) {
    case "string":
      // The ES2019 well-formed stringify escapes lone surrogates, so the text is valid UTF-8.
      return JSON.stringify(value)
    case "boolean":
      return value ? "true" : "false"
    case "number":
      if (!Number.isFinite(value)) return fail(path, `${value} is not a JSON number`)
      // Number#toString is the shortest text that reads back as the same double, so every
      // spelling of one number (1, 1.0, 1e0, 10e-1) ends up the same; -0 becomes 0.
      return Object.is(value, -0) ? "0" : String(value)
    case "undefined":
      return undefined
    case "bigint":
    case "function":
    case "symbol":
      return fail(path, `a ${typeof value} is not JSON`)
    case "object": {
      if (value === null) return "null"
      if (seen.has(value)) return fail(path, "the value contains a cycle")
      if (!Array.isArray(value) && !isPlainObject(value)) {
        const toJSON = (value as { toJSON?: unknown }).toJSON
        if (typeof toJSON === "function") return encode(toJSON.call(value), path, seen)
        return fail(path, `a ${value.constructor?.name ?? "non-plain object"} is not JSON`)
      }
      seen.add(value)
      try {
        if (Array.isArray(value)) {
          // As in JSON.stringify, a hole or an undefined element is null.
          const items = Array.from(value, (item, i) => encode(item, `${path}[${i}]`, seen) ?? "null")
          return `[${items.join(",")}]`
        }
        // Keys sorted by UTF-16 code units, as RFC 8785 (JCS) does; undefined members are left
        // out, as JSON.stringify does.
        const members: Array<string> = []
        for (const key of Object.keys(value).sort()) {
          const encoded = encode(value[key], path === "" ? key : `${path}.${key}`, seen)
          if (encoded !== undefined) members.push(`${JSON.stringify(key)}:${encoded}`)
        }
        return `{${members.join(",")}}`
      } finally {
        seen.delete(value)
      }
    }
  }
}

/**
 * The canonical JSON text of a JSON-like value: object keys sorted, no whitespace, each number
 * in its shortest round-trip form. Two values have the same canonical text exactly when they are
 * the same JSON document, whatever their key order, whitespace or number spelling.
 *
 * Numbers are JavaScript doubles: integers beyond 2^53 that JSON.parse already rounded to the
 * same double are the same number here too.
 *
 * @throws PayloadNotJson when the value holds something JSON cannot represent.
 */
export const canonicalJson = (value: unknown): string => encode(value, "", new Set()) ?? "null"

/** SHA-256 (lower-case hex) of the canonical JSON text of `value`. */
export const fingerprint = (value: unknown): string =>
  Crypto.createHash("sha256").update(canonicalJson(value), "utf8").digest("hex")

/** The fingerprint of a JSON text: whitespace, key order and number spelling do not change it. */
export const fingerprintJson = (text: string): string => fingerprint(JSON.parse(text))
