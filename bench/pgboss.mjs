// pgboss.mjs - the pg-boss anchor for bench/queue.sh (perf-anchors.md §3, "tuned"):
// enqueue N no-op jobs, then drain them with W work() subscriptions of batchSize B
// polling every P seconds; the drain ends when all N are stored as completed.
// Prints one JSON line like bt-bench-queue's.
//
//   node bench/pgboss.mjs URL N [B=500] [W=4] [P=0.5]
//
// pg-boss is installed by `npm install --prefix bench/node` (package.json pins 10.4.2,
// the newest line that runs on Node 20). It uses its own schema, pgboss_bench, which
// the caller drops between runs.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(path.join(here, 'node', 'package.json'))
const PgBoss = require('pg-boss')

const [url, nArg, bArg = '500', wArg = '4', pArg = '0.5'] = process.argv.slice(2)
if (!url || !nArg) {
  console.error('usage: node bench/pgboss.mjs URL N [BATCH] [WORKERS] [POLL_SECONDS]')
  process.exit(2)
}
const N = Number(nArg), B = Number(bArg), W = Number(wArg), P = Number(pArg)
const schema = 'pgboss_bench'
const queue = 'bench'

const boss = new PgBoss({ connectionString: url, schema, max: W + 4, supervise: false, schedule: false })
boss.on('error', (e) => console.error('pg-boss:', e.message))
await boss.start()
await boss.createQueue(queue)

// Enqueue in chunks of 1,000 through insert() (fast set-up; the drain is what is measured).
const t0 = performance.now()
for (let i = 0; i < N; i += 1000) {
  const jobs = []
  for (let j = i; j < Math.min(N, i + 1000); j++) jobs.push({ name: queue, data: { n: j } })
  await boss.insert(jobs)
}
const enqS = (performance.now() - t0) / 1000

const db = boss.getDb()
const completed = async () =>
  Number((await db.executeSql(`SELECT count(*) AS n FROM ${schema}.job WHERE name = $1 AND state = 'completed'`, [queue])).rows[0].n)

let seen = 0
let resolveSeen
const allSeen = new Promise((resolve) => { resolveSeen = resolve })
const t1 = performance.now()
for (let w = 0; w < W; w++) {
  await boss.work(queue, { batchSize: B, pollingIntervalSeconds: P }, async (jobs) => {
    seen += jobs.length
    if (seen >= N) resolveSeen()
  })
}
await allSeen
while ((await completed()) < N) await new Promise((r) => setTimeout(r, 20))
const runS = (performance.now() - t1) / 1000

console.log(JSON.stringify({
  bench: 'queue', backend: 'pg-boss 10.4.2', items: N, workers: W, batch: B, poll_s: P,
  enqueue_per_s: Math.round(N / enqS), seconds: Number(runS.toFixed(3)),
  items_per_s: Math.round(N / runS), errors: 0
}))
await boss.stop({ graceful: false, wait: false })
process.exit(0)
