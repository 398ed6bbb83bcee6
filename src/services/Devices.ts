import { SqlClient, type Statement } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import * as Crypto from "node:crypto"
import { DeviceKeyNotFound, DeviceNotFound, VenueNotFound } from "../domain/Identity.js"
import { hashKey } from "../http/Security.js"
import { Audit } from "./Audit.js"

export interface DeviceKey {
  readonly keyId: string
  /** The first characters of the key, so operators can tell keys apart. */
  readonly hint: string
  readonly createdAt: Date
  readonly revokedAt: Date | null
}

export interface Device {
  readonly deviceId: string
  readonly venueId: string
  readonly name: string
  readonly createdAt: Date
  readonly revokedAt: Date | null
  readonly keys: ReadonlyArray<DeviceKey>
}

/** A freshly issued key: the only moment the key itself exists outside the device. */
export interface IssuedKey extends DeviceKey {
  readonly apiKey: Redacted.Redacted<string>
}

/** The device a valid key acts for. */
export interface Principal {
  readonly deviceId: string
  readonly venueId: string
}

export const deviceKeyPrefix = "gh_dev_"
const keyShape = /^gh_dev_[A-Za-z0-9_-]{43}$/

/** Whether a string has the form of a device key (checked before any lookup). */
export const isDeviceKeyShaped = (key: string) => keyShape.test(key)

export interface DevicesShape {
  /** Creates a device of a venue with its first key. */
  readonly create: (
    venueId: string,
    name: string
  ) => Effect.Effect<{ readonly device: Device; readonly key: IssuedKey }, VenueNotFound | SqlError>
  readonly list: (venueId?: string) => Effect.Effect<ReadonlyArray<Device>, SqlError>
  readonly get: (deviceId: string) => Effect.Effect<Device, DeviceNotFound | SqlError>
  /** Issues another key (rotation); earlier keys keep working until revoked. */
  readonly issueKey: (deviceId: string) => Effect.Effect<IssuedKey, DeviceNotFound | SqlError>
  readonly revokeKey: (deviceId: string, keyId: string) => Effect.Effect<DeviceKey, DeviceKeyNotFound | SqlError>
  /** Revokes the device: none of its keys work any more. Revoking twice changes nothing. */
  readonly revoke: (deviceId: string) => Effect.Effect<Device, DeviceNotFound | SqlError>
  /** The device a key acts for, if the key is known and neither it nor its device is revoked. */
  readonly authenticate: (key: Redacted.Redacted<string>) => Effect.Effect<Option.Option<Principal>, SqlError>
}

/** Devices of venues and their API keys, stored as SHA-256 hashes. */
export class Devices extends Context.Tag("gatehouse/Devices")<Devices, DevicesShape>() {
  static readonly layer = Layer.effect(
    Devices,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const audit = yield* Audit

      const load = (where: Statement.Fragment) =>
        Effect.gen(function*() {
          const devices = yield* sql<Omit<Device, "keys">>`
            SELECT id AS "deviceId", venue_id AS "venueId", name, created_at AS "createdAt", revoked_at AS "revokedAt"
            FROM devices WHERE ${where} ORDER BY created_at, id
          `
          if (devices.length === 0) return []
          const keys = yield* sql<DeviceKey & { deviceId: string }>`
            SELECT id AS "keyId", device_id AS "deviceId", hint, created_at AS "createdAt", revoked_at AS "revokedAt"
            FROM device_keys WHERE device_id IN ${sql.in(devices.map((d) => d.deviceId))}
            ORDER BY created_at, id
          `
          return devices.map((d): Device => ({
            ...d,
            keys: keys.filter((k) => k.deviceId === d.deviceId).map(({ deviceId: _, ...k }) => k)
          }))
        })

      const get = (deviceId: string) =>
        Effect.flatMap(
          load(sql`id = ${deviceId}`),
          (found) =>
            found[0] === undefined ? Effect.fail(new DeviceNotFound({ id: deviceId })) : Effect.succeed(found[0])
        )

      const insertKey = (deviceId: string) =>
        Effect.gen(function*() {
          const apiKey = `${deviceKeyPrefix}${Crypto.randomBytes(32).toString("base64url")}`
          const keyId = Crypto.randomUUID()
          const hint = apiKey.slice(0, deviceKeyPrefix.length + 6)
          const [row] = yield* sql<DeviceKey>`
            INSERT INTO device_keys (id, device_id, key_hash, hint)
            VALUES (${keyId}, ${deviceId}, ${hashKey(apiKey)}, ${hint})
            RETURNING id AS "keyId", hint, created_at AS "createdAt", revoked_at AS "revokedAt"
          `
          return { ...row!, apiKey: Redacted.make(apiKey) } satisfies IssuedKey
        })

      const create = (venueId: string, name: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const venue = yield* sql`SELECT 1 FROM venues WHERE id = ${venueId}`
          if (venue.length === 0) return yield* new VenueNotFound({ id: venueId })
          const deviceId = Crypto.randomUUID()
          yield* sql`INSERT INTO devices (id, venue_id, name) VALUES (${deviceId}, ${venueId}, ${name})`
          const key = yield* insertKey(deviceId)
          yield* audit.record({ action: "device.created", venueId, deviceId })
          yield* audit.record({ action: "device.key_issued", venueId, deviceId, details: { keyId: key.keyId } })
          return { device: yield* Effect.catchTag(get(deviceId), "DeviceNotFound", Effect.die), key }
        })).pipe(Effect.withSpan("Devices.create"))

      const issueKey = (deviceId: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const device = yield* get(deviceId)
          if (device.revokedAt !== null) return yield* new DeviceNotFound({ id: deviceId })
          const key = yield* insertKey(deviceId)
          yield* audit.record({
            action: "device.key_issued",
            venueId: device.venueId,
            deviceId,
            details: { keyId: key.keyId }
          })
          return key
        })).pipe(Effect.withSpan("Devices.issueKey"))

      const revokeKey = (deviceId: string, keyId: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const rows = yield* sql<DeviceKey & { venueId: string; changed: boolean }>`
            WITH target AS (
              SELECT k.id, d.venue_id, k.revoked_at IS NULL AS changed
              FROM device_keys k JOIN devices d ON d.id = k.device_id
              WHERE k.id = ${keyId} AND k.device_id = ${deviceId}
              FOR UPDATE OF k
            )
            UPDATE device_keys k SET revoked_at = coalesce(k.revoked_at, now())
            FROM target WHERE k.id = target.id
            RETURNING k.id AS "keyId", k.hint, k.created_at AS "createdAt", k.revoked_at AS "revokedAt",
                      target.venue_id AS "venueId", target.changed
          `
          const row = rows[0]
          if (row === undefined) return yield* new DeviceKeyNotFound({ id: keyId })
          if (row.changed) {
            yield* audit.record({ action: "device.key_revoked", venueId: row.venueId, deviceId, details: { keyId } })
          }
          const { changed: _, venueId: __, ...key } = row
          return key
        })).pipe(Effect.withSpan("Devices.revokeKey"))

      const revoke = (deviceId: string) =>
        sql.withTransaction(Effect.gen(function*() {
          const rows = yield* sql<{ venueId: string }>`
            UPDATE devices SET revoked_at = now() WHERE id = ${deviceId} AND revoked_at IS NULL
            RETURNING venue_id AS "venueId"
          `
          if (rows[0] !== undefined) {
            yield* audit.record({ action: "device.revoked", venueId: rows[0].venueId, deviceId })
          }
          return yield* get(deviceId)
        })).pipe(Effect.withSpan("Devices.revoke"))

      const authenticate = (key: Redacted.Redacted<string>) =>
        Effect.suspend(() => {
          const value = Redacted.value(key)
          if (!isDeviceKeyShaped(value)) return Effect.succeed(Option.none())
          return Effect.map(
            sql<Principal>`
              SELECT d.id AS "deviceId", d.venue_id AS "venueId"
              FROM device_keys k JOIN devices d ON d.id = k.device_id
              WHERE k.key_hash = ${hashKey(value)} AND k.revoked_at IS NULL AND d.revoked_at IS NULL
            `,
            (rows) => Option.fromNullable(rows[0])
          )
        }).pipe(Effect.withSpan("Devices.authenticate"))

      return {
        create,
        list: (venueId?: string) => load(venueId === undefined ? sql`true` : sql`venue_id = ${venueId}`),
        get,
        issueKey,
        revokeKey,
        revoke,
        authenticate
      }
    })
  )
}
