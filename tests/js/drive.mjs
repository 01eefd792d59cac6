// Drives Runpod's JavaScript SDK (runpod-sdk) against a Skiff gateway, changing only baseUrl.
// Usage: node drive.mjs <scenario>; SKIFF_URL, SKIFF_KEY and RESULT_FILE in the environment.
// Writes {"result": ..., "requests": ["GET /v2/..."]} to RESULT_FILE: what the SDK returned and
// every request it made (the SDK prints progress on stdout, so results do not go there).
import { writeFileSync } from "node:fs"

const requests = []
const realFetch = globalThis.fetch
// xior, the SDK's HTTP client, calls the global fetch on each request.
globalThis.fetch = (url, init) => {
  const u = new URL(String(url))
  requests.push(`${(init && init.method) || "GET"} ${u.pathname}${u.search}`)
  return realFetch(url, init)
}

const { default: runpodSdk } = await import("runpod-sdk")
const runpod = runpodSdk(process.env.SKIFF_KEY, { baseUrl: `${process.env.SKIFF_URL}/v2` })
const echo = runpod.endpoint("echo")
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function untilStatus(endpoint, id, wanted) {
  for (let i = 0; i < 600; i++) {
    const status = await endpoint.status(id)
    if (wanted.includes(status.status)) return status
    await sleep(100)
  }
  throw new Error(`job ${id} never reached ${wanted}`)
}

const scenarios = {
  // run, then status until it is done.
  async run_status() {
    const { id } = await echo.run({ input: { question: "life" } })
    return await untilStatus(echo, id, ["COMPLETED", "FAILED"])
  },
  // runSync on a job that outlives the first wait: the SDK goes on with /status-sync.
  async run_sync_long() {
    return await echo.runSync({ input: { sleep: 4.5, n: 7 } }, 3000)
  },
  async status_sync() {
    const { id } = await echo.run({ input: { sleep: 1.5, n: 8 } })
    return await echo.statusSync(id, 60000)
  },
  async stream() {
    const endpoint = runpod.endpoint("stream")
    const { id } = await endpoint.run({ input: { text: "to be or not", delay: 0.1 } })
    const items = []
    for await (const item of endpoint.stream(id)) items.push(item)
    return items
  },
  async cancel() {
    const { id } = await echo.run({ input: { sleep: 30 } })
    await untilStatus(echo, id, ["IN_PROGRESS"])
    const cancelled = await echo.cancel(id)
    const after = await echo.status(id)
    return { cancelled, after: after.status }
  },
  async health_purge() {
    const { id: blocker } = await echo.run({ input: { sleep: 30 } })
    await untilStatus(echo, blocker, ["IN_PROGRESS"])
    const queued = [await echo.run({ input: { n: 1 } }), await echo.run({ input: { n: 2 } })]
    const health = await echo.health()
    const purged = await echo.purgeQueue()
    const statuses = []
    for (const job of queued) statuses.push((await echo.status(job.id)).status)
    await echo.cancel(blocker)
    return { health, purged, statuses }
  },
}

const name = process.argv[2]
const result = await scenarios[name]()
writeFileSync(process.env.RESULT_FILE, JSON.stringify({ result, requests }))
