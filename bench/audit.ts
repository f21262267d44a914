/**
 * The audit benchmark (`npm run bench:audit`): what recording every mutating request costs. For
 * SQLite and PostgreSQL it builds two control planes in this process, one with the audit hook and
 * one without, and sends each 2,000 authenticated POSTs that fail validation (400), in rounds where
 * the two take turns so background load hits both alike. It prints the time per request of each and
 * their ratio, and checks that every audited request left its record. It never fails on times.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buildApp, type App } from '../packages/server/src/app.js';
import { createCa, issueServerCert, signCsr } from '../packages/server/src/ca/index.js';
import { loadConfig } from '../packages/server/src/config.js';
import type { Store } from '../packages/server/src/db/index.js';
import type { StoreTarget } from '../packages/server/src/db/testing.js';
import { seed } from '../packages/server/src/wiring.js';
import { fmt, percentile, sorted, table } from './report.js';
import { benchEachStore } from './stores.js';

const N = 2_000;
const ROUNDS = 10;
const CONCURRENCY = 16;
const WARMUP = 200;

const log = (line: string) => process.stdout.write(`${line}\n`);

interface Side {
  app: App;
  store: Store;
  token: string;
  close(): Promise<void>;
}

interface Result {
  withAuditMs: number;
  withoutAuditMs: number;
  /** Median of the rounds' ratios: less swayed by a burst of load elsewhere than the totals. */
  medianRatio: number;
  records: number;
}

async function side(target: StoreTarget, audit: boolean): Promise<Side> {
  const store = await target.open();
  const ca = await createCa({ commonName: 'floe bench CA' });
  const server = await issueServerCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'floe-bench-audit-'));
  const config = loadConfig({ FLOE_DATA: dataDir, FLOE_TLS: 'off', FLOE_LOG_LEVEL: 'silent' });
  const app = await buildApp({
    store,
    config,
    pki: { caPem: ca.certPem, server, signCsr: (csr, hostId) => signCsr(ca, csr, { commonName: hostId }) },
    logger: { level: 'silent' },
    audit,
  });
  await seed(app.services);
  const token = (await app.services.tokens.bootstrapAdmin())!;
  return {
    app,
    store,
    token,
    async close() {
      await app.close();
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Send `count` invalid creates, CONCURRENCY at a time; the elapsed milliseconds. */
async function burst(s: Side, count: number): Promise<number> {
  const started = performance.now();
  let sent = 0;
  const lane = async () => {
    while (sent < count) {
      sent++;
      const res = await s.app.http.inject({
        method: 'POST',
        url: '/v1/projects',
        headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
        payload: '{"name":"Not A Valid Name"}',
      });
      if (res.statusCode !== 400) throw new Error(`expected 400, got ${res.statusCode}: ${res.body}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return performance.now() - started;
}

async function benchStore(target: StoreTarget): Promise<Result> {
  const on = await side(target, true);
  const off = await side(target, false);
  try {
    await burst(on, WARMUP);
    await burst(off, WARMUP);
    let withAuditMs = 0;
    let withoutAuditMs = 0;
    const ratios: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, so neither always runs right after the other's writes.
      let a: number;
      let b: number;
      if (round % 2 === 0) {
        a = await burst(on, N / ROUNDS);
        b = await burst(off, N / ROUNDS);
      } else {
        b = await burst(off, N / ROUNDS);
        a = await burst(on, N / ROUNDS);
      }
      withAuditMs += a;
      withoutAuditMs += b;
      ratios.push(a / b);
    }
    const medianRatio = percentile(sorted(ratios), 0.5);
    await on.app.services.audit.flush();
    const { count } = await on.store.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('action', '=', 'project.create')
      .executeTakeFirstOrThrow();
    const records = Number(count);
    log(
      `[${target.name}] with audit ${fmt(withAuditMs / N, 3)} ms/request, without ${fmt(withoutAuditMs / N, 3)} ms/request, ` +
        `ratio ${fmt(withAuditMs / withoutAuditMs, 2)}x (median of rounds ${fmt(medianRatio, 2)}x), ${records} records for ${N + WARMUP} requests`,
    );
    return { withAuditMs, withoutAuditMs, medianRatio, records };
  } finally {
    await on.close();
    await off.close();
  }
}

const results = await benchEachStore(log, benchStore);
log('');
log(
  table(
    ['metric', ...results.names],
    [
      ['ms/request with audit', ...results.names.map((n) => results.cell(n, (r) => fmt(r.withAuditMs / N, 3)))],
      ['ms/request without audit', ...results.names.map((n) => results.cell(n, (r) => fmt(r.withoutAuditMs / N, 3)))],
      [
        'ratio with / without',
        ...results.names.map((n) => results.cell(n, (r) => `${fmt(r.withAuditMs / r.withoutAuditMs, 2)}x`)),
      ],
      ['median ratio of the rounds', ...results.names.map((n) => results.cell(n, (r) => `${fmt(r.medianRatio, 2)}x`))],
      ['records written', ...results.names.map((n) => results.cell(n, (r) => `${r.records} / ${N + WARMUP}`))],
    ],
  ),
);
