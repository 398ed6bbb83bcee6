/** Setup calls to the bench service over its public HTTP API (not measured). */

export const adminKey = "gh_admin_bench"

export const call = async (
  port: number,
  method: string,
  path: string,
  options: { readonly key?: string; readonly body?: unknown; readonly headers?: Record<string, string> } = {}
): Promise<{ status: number; body: any }> => {
  const headers: Record<string, string> = { ...options.headers }
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`
  const body = options.body === undefined ? undefined : JSON.stringify(options.body)
  if (body !== undefined) headers["content-type"] = "application/json"
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body })
  })
  const text = await response.text()
  return { status: response.status, body: text === "" ? undefined : JSON.parse(text) }
}

export const expect = async (
  what: string,
  status: number,
  reply: Promise<{ status: number; body: any }>
): Promise<any> => {
  const answer = await reply
  if (answer.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${answer.status} ${JSON.stringify(answer.body)}`)
  }
  return answer.body
}

export interface Fixture {
  readonly venueId: string
  readonly deviceId: string
  readonly deviceKey: string
  readonly eventId: string
}

/** A venue with one device (and its key) and one event running now. */
export const venueFixture = async (port: number): Promise<Fixture> => {
  const venue = await expect(
    "create venue",
    201,
    call(port, "POST", "/v1/admin/venues", { key: adminKey, body: { name: "bench venue" } })
  )
  const device = await expect(
    "create device",
    201,
    call(port, "POST", "/v1/admin/devices", { key: adminKey, body: { venueId: venue.venueId, name: "bench gate" } })
  )
  const startsAt = new Date(Date.now() - 3_600_000)
  const event = await expect(
    "create event",
    201,
    call(port, "POST", "/v1/admin/events", {
      key: adminKey,
      body: {
        venueId: venue.venueId,
        name: "bench event",
        startsAt: startsAt.toISOString(),
        endsAt: new Date(startsAt.getTime() + 86_400_000).toISOString()
      }
    })
  )
  return {
    venueId: venue.venueId,
    deviceId: device.device.deviceId,
    deviceKey: device.key.apiKey,
    eventId: event.eventId
  }
}
