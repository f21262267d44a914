/**
 * The web UI benchmark (`npm run bench:web`): what the instance list costs a browser. It starts a control
 * plane and an agent with the fake VM driver, seeds 1,000 instances (copies of a created one), signs in
 * with Debian's chromium and measures, in the same run:
 *
 * - page weight: the JavaScript the instance list loads, raw and gzipped (floed sends the build's brotli
 *   or gzip copy to browsers that accept one; brotli is smaller still), and the lazy chunks it does not load;
 * - time to interactive of the list with 1,000 instances (navigation until every row is drawn and the
 *   page answers input), against two baselines measured alike: the same page with no instances, and the
 *   bare API request the page makes for its data;
 * - how long a label filter typed into the 1,000-row list takes to show its result.
 *
 * With `--screenshots`, it also writes the README's screenshots (1280 and 390 px) to docs/screenshots/.
 * It never fails on a time.
 */
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import { transaction } from '../packages/server/src/db/index.js';
import { storeTargets } from '../packages/server/src/db/testing.js';
import { newId } from '../packages/server/src/ids.js';
import { startTestControlPlane } from '../packages/server/src/testing.js';
import { browserMissing, launchBrowser, signIn, watchedContext } from '../test/e2e/browser.js';
import { clientFor, eventually, kill, prepareAgent, ROOT, startAgent } from '../test/e2e/helpers.js';
import { fmt, percentile, sorted, table } from './report.js';

const INSTANCES = 1_000;
const RUNS = 5;
const PASSWORD = 'bench password 1';
const log = (line: string) => process.stdout.write(`${line}\n`);
const median = (xs: number[]) => percentile(sorted(xs), 0.5);

/** The page's globals these functions use (the benchmark is type-checked without the DOM's types). */
interface PageGlobals {
  requestAnimationFrame(f: () => void): void;
  localStorage: { setItem(k: string, v: string): void };
}

/** Loads the list and answers: rows drawn (ms after navigation start), the page idle and answering input. */
async function loadList(page: Page, url: string, rows: number): Promise<{ drawn: number; interactive: number }> {
  await page.goto(`${url}/instances`, { waitUntil: 'commit' });
  await page
    .locator('#instance-count')
    .filter({ hasText: `${rows} of ${rows} instances` })
    .waitFor({ timeout: 120_000 });
  return page.evaluate(
    () =>
      new Promise<{ drawn: number; interactive: number }>((resolve) => {
        const drawn = performance.now();
        // Interactive: a frame was painted and a task queued after it ran, so input would be handled now.
        (globalThis as unknown as PageGlobals).requestAnimationFrame(() =>
          setTimeout(() => resolve({ drawn, interactive: performance.now() }), 0),
        );
      }),
  );
}

async function main(): Promise<void> {
  const missing = browserMissing();
  if (missing !== null) {
    log(`bench:web skipped: ${missing}`);
    return;
  }
  const shots = process.argv.includes('--screenshots');
  const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;
  const cp = await startTestControlPlane(await sqlite.open(), { FLOE_HEARTBEAT_MS: '500' });
  const admin = clientFor(cp);
  const { hostId, dataDir } = await prepareAgent(cp, 'bench-host');
  const agent = startAgent(cp.url, dataDir);
  const browser = await launchBrowser();
  try {
    await eventually(async () => (await admin.hosts.get(hostId)).status.state === 'online', 'host online', 60_000);
    await admin.images.create({ name: 'debian-12', os: 'debian' });
    await admin.projects.create({ name: 'empty' });
    await admin.users.create({ name: 'ada', password: PASSWORD });
    await admin.members.add('default', { user: 'ada', role: 'owner' });
    await admin.members.add('empty', { user: 'ada', role: 'owner' });
    const first = await admin.instances.create({ name: 'bench-0000', image: 'debian-12', machine_type: 'nano' });
    await admin.operations.wait(first.operation, { timeoutMs: 60_000 });
    const template = await cp.store.db
      .selectFrom('instances')
      .selectAll()
      .where('name', '=', 'bench-0000')
      .executeTakeFirstOrThrow();
    await transaction(cp.store, async (trx) => {
      const rows = Array.from({ length: INSTANCES - 1 }, (_, i) => ({
        ...template,
        id: newId('instance'),
        name: `bench-${String(i + 1).padStart(4, '0')}`,
      }));
      for (let at = 0; at < rows.length; at += 250)
        await trx
          .insertInto('instances')
          .values(rows.slice(at, at + 250))
          .execute();
    });
    log(`seeded ${INSTANCES} instances; chromium ${browser.version()}`);

    // ---- page weight
    const { context } = await watchedContext(browser, 1280, 800);
    const page = await context.newPage();
    const scripts = new Map<string, number>();
    page.on('response', (r) => {
      if (r.request().resourceType() === 'script') scripts.set(new URL(r.url()).pathname, 0);
    });
    await signIn(page, cp.url, 'ada', PASSWORD);
    await page.getByLabel('Project').selectOption('default');
    const assets = path.join(ROOT, 'packages', 'web', 'dist', 'assets');
    const weigh = async (names: string[]) => {
      let raw = 0;
      let gz = 0;
      for (const n of names) {
        const bytes = await readFile(path.join(assets, n));
        raw += bytes.length;
        gz += gzipSync(bytes, { level: 9 }).length;
      }
      return { raw, gz };
    };
    const loaded = [...scripts.keys()].map((p) => path.basename(p));
    const all = (await readdir(assets)).filter((f) => f.endsWith('.js'));
    const listWeight = await weigh(loaded);
    const lazyWeight = await weigh(all.filter((f) => !loaded.includes(f)));

    // ---- time to interactive: 1,000 instances, no instances, the bare data request; in alternating turns
    const full: number[] = [];
    const drawn: number[] = [];
    const empty: number[] = [];
    const bare: number[] = [];
    const filter: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      await page.getByLabel('Project').selectOption('empty');
      const e = await loadList(page, cp.url, 0);
      empty.push(e.interactive);
      await page.evaluate(() => (globalThis as unknown as PageGlobals).localStorage.setItem('floe.project', 'default'));
      const f = await loadList(page, cp.url, INSTANCES);
      full.push(f.interactive);
      drawn.push(f.drawn);
      bare.push(
        await page.evaluate(async () => {
          const t = performance.now();
          const res = await fetch('/v1/instances?project=default&limit=1000', { credentials: 'same-origin' });
          await res.json();
          return performance.now() - t;
        }),
      );
      const t = Date.now();
      await page.getByRole('searchbox').fill('nothing=here');
      await page
        .locator('#instance-count')
        .filter({ hasText: `0 of ${INSTANCES} instances` })
        .waitFor();
      filter.push(Date.now() - t);
      await page.getByRole('searchbox').fill('');
      await page.evaluate(() => (globalThis as unknown as PageGlobals).localStorage.setItem('floe.project', 'empty'));
    }
    const tti = median(full);
    log('');
    log(
      table(
        ['what', 'figure'],
        [
          ['JS the instance list loads (raw)', `${fmt(listWeight.raw / 1024)} KiB in ${loaded.length} files`],
          ['JS the instance list loads (gzipped)', `${fmt(listWeight.gz / 1024)} KiB`],
          ['lazy chunks not loaded (consoles, YAML; gzipped)', `${fmt(lazyWeight.gz / 1024)} KiB`],
          [`rows drawn, ${INSTANCES} instances (median of ${RUNS})`, `${fmt(median(drawn), 0)} ms`],
          [
            `time to interactive, ${INSTANCES} instances`,
            `${fmt(tti, 0)} ms (runs: ${full.map((x) => fmt(x, 0)).join(', ')})`,
          ],
          ['baseline: time to interactive, no instances', `${fmt(median(empty), 0)} ms`],
          ['baseline: the bare API request for 1,000 instances', `${fmt(median(bare), 0)} ms`],
          ['ratio: 1,000 instances / no instances', `${fmt(tti / median(empty), 2)}×`],
          ['ratio: 1,000 instances / bare API request', `${fmt(tti / median(bare), 2)}×`],
          [`label filter over ${INSTANCES} rows (median)`, `${fmt(median(filter), 0)} ms`],
        ],
      ),
    );
    await context.close();
    if (shots) {
      // The copies hold the host's capacity: the screenshots' instances need it.
      await cp.store.db
        .deleteFrom('instances')
        .where('name', 'like', 'bench-%')
        .where('name', '!=', 'bench-0000')
        .execute();
      await screenshots(cp.url, admin, browser);
    }
  } finally {
    await browser.close();
    await kill(agent);
    await admin.close();
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** The README's screenshots: a small project with labelled instances, at 1280 and 390 px. */
async function screenshots(
  url: string,
  admin: ReturnType<typeof clientFor>,
  browser: Awaited<ReturnType<typeof launchBrowser>>,
): Promise<void> {
  const dir = path.join(ROOT, 'docs', 'screenshots');
  await mkdir(dir, { recursive: true });
  await admin.projects.create({ name: 'shop' });
  await admin.members.add('shop', { user: 'ada', role: 'owner' });
  await admin.images.create({ name: 'debian-12', project: 'shop', os: 'debian', format: 'raw' });
  // A small blank disk makes the image ready for the wizard (the fake driver boots nothing from it).
  await admin.images.upload('debian-12', Buffer.alloc(1 << 20), { project: 'shop' });
  await admin.networks.create({ name: 'lan', project: 'shop', ipv4: '10.40.0.0/24' });
  const ops = [];
  for (const [name, labels, type] of [
    ['web-1', { env: 'prod', tier: 'web' }, 'small'],
    ['web-2', { env: 'prod', tier: 'web' }, 'small'],
    ['db-1', { env: 'prod', tier: 'db' }, 'medium'],
    ['ci-runner', { env: 'ci' }, 'nano'],
    ['staging', { env: 'staging' }, 'nano'],
  ] as const) {
    const c = await admin.instances.create({
      name,
      project: 'shop',
      image: 'debian-12',
      machine_type: type,
      labels,
      networks: ['lan'],
    });
    ops.push(c.operation);
  }
  for (const o of ops) await admin.operations.wait(o, { timeoutMs: 60_000 });
  await admin.instances.stop('staging', { project: 'shop', wait: 30 });
  await admin.vpnPools.create({
    name: 'edge',
    ipv6: 'fd50::/40',
    ipv4: '10.250.0.0/16',
    hosts: ['bench-host'],
    endpoint: 'vpn.example.org',
  });
  await admin.vpnNetworks.create({ name: 'office', project: 'shop', pool: 'edge', networks: ['lan'] });
  for (const [width, height] of [
    [1280, 800],
    [390, 844],
  ] as const) {
    const { context } = await watchedContext(browser, width, height);
    const page = await context.newPage();
    await signIn(page, url, 'ada', PASSWORD);
    await page.getByLabel('Project').selectOption('shop');
    await page.goto(`${url}/instances`);
    await page.locator('tr[data-instance="web-1"]').waitFor();
    await page.screenshot({ path: path.join(dir, `instances-${width}.png`) });
    await page.goto(`${url}/new`);
    await page.getByLabel('Name', { exact: true }).fill('web-3');
    await page.getByRole('radio', { name: /debian-12/ }).check();
    await page.screenshot({ path: path.join(dir, `create-${width}.png`) });
    await page.goto(`${url}/instances/web-1/graphs`);
    await page.waitForTimeout(12_000); // two samples of the host's stats history
    await page.screenshot({ path: path.join(dir, `graphs-${width}.png`) });
    await page.goto(`${url}/instances/web-1/vnc`);
    await page.getByText(/^Connected/).waitFor({ timeout: 30_000 });
    await page.waitForTimeout(1000);
    await page.screenshot({ path: path.join(dir, `vnc-${width}.png`) });
    // A new VPN peer: its wg-quick file and QR code, shown this once.
    await page.goto(`${url}/vpn`);
    const peer = page.getByRole('form', { name: 'New peer' });
    await peer.getByLabel('Name').fill(width > 400 ? 'laptop' : 'phone');
    await peer.getByRole('button', { name: 'Add peer' }).click();
    const created = page.getByRole('region', { name: 'New peer config' });
    await created.getByRole('img').waitFor();
    await created.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(dir, `vpn-${width}.png`) });
    await context.close();
  }
  log(`screenshots written to ${path.relative(ROOT, dir)}/`);
}

await main();
