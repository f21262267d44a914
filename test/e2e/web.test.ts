import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { ensureTestImage } from '@floe/testkit/guest-image';
import type { FloeClient } from '@floe/client';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { browserMissing, launchBrowser, signIn, watchedContext } from './browser.js';
import { clientFor, eventually, kill } from './helpers.js';
import { Namespaces, startAgentIn } from './netns.js';

const have = (cmd: string, ...args: string[]) => spawnSync(cmd, args).status === 0;
const skip =
  process.getuid?.() !== 0
    ? 'needs root (a network namespace for the host)'
    : !have('qemu-system-x86_64', '--version')
      ? 'qemu-system-x86_64 is not installed'
      : browserMissing();
if (skip && !process.env.CI) console.warn(`skipping the web UI journey: ${skip}`);

const PASSWORD = 'web ui password 1';
const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

/**
 * The web UI in a real browser (Debian's chromium through playwright-core) against a real floed and a
 * real agent with QEMU (TCG) running the test image: sign in, create a VM with the wizard on a network,
 * watch it reach running through live events on another tab, type into its serial console, see its
 * graphical console draw and its stats graph fill, then stop and delete it. A viewer sees no console; a
 * user of another project never sees the VM. No page logs an error.
 */
describe.skipIf(skip !== null && !process.env.CI)('web UI journey in a real browser', () => {
  const ns = new Namespaces();
  const base = `10.${150 + (randomBytes(1)[0]! % 40)}`;
  let cp: TestControlPlane;
  let admin: FloeClient;
  let agent: ReturnType<typeof startAgentIn> | undefined;
  let agentDir = '';
  let browser: Browser;

  beforeAll(async () => {
    const h = await ns.add('w1');
    await ns.link(
      { ns: null, name: `fe${ns.tag}w0`, addr: `${base}.1.1/24` },
      { ns: h, name: 'cp0', addr: `${base}.1.2/24` },
    );
    cp = await startTestControlPlane(await sqlite.open(), { FLOE_HEARTBEAT_MS: '500' }, undefined, `${base}.1.1`);
    admin = clientFor(cp);
    const { hostId, dataDir } = await prepareAgentDir(cp, 'web-host');
    agentDir = dataDir;
    agent = startAgentIn(h, cp.url, dataDir, `${base}.1.2`);
    await eventually(async () => (await admin.hosts.get(hostId)).status.state === 'online', 'host online', 60_000);
    const image = await ensureTestImage();
    for (const p of ['web', 'other']) await admin.projects.create({ name: p });
    await admin.images.create({ name: 'floe-test', project: 'web' });
    await admin.images.upload('floe-test', image.path, { project: 'web' });
    await admin.networks.create({ name: 'lan', project: 'web', ipv4: '10.77.0.0/24', gateway: 'host' });
    await admin.networks.create({ name: 'back', project: 'web', ipv4: '10.78.0.0/24', gateway: 'none' });
    for (const [name, project, role] of [
      ['alice', 'web', 'member'],
      ['vera', 'web', 'viewer'],
      ['bob', 'other', 'owner'],
    ] as const) {
      await admin.users.create({ name, password: PASSWORD });
      await admin.members.add(project, { user: name, role });
    }
    browser = await launchBrowser();
  }, 300_000);
  afterAll(async () => {
    await browser?.close();
    if (agent) await kill(agent);
    await ns.cleanup();
    await admin?.close();
    await cp?.close();
    if (agentDir) await rm(agentDir, { recursive: true, force: true });
  });

  it('serves the app at / and its client-side routes, and the API stays JSON', async () => {
    const { context } = await watchedContext(browser, 1280, 800);
    const get = (path: string, accept: string) => context.request.get(`${cp.url}${path}`, { headers: { accept } });
    const root = await get('/', 'text/html');
    expect(root.status()).toBe(200);
    expect(await root.text()).toContain('<div id="root">');
    expect(root.headers()['content-security-policy']).toContain("default-src 'self'");
    const deep = await get('/instances/anything/console', 'text/html');
    expect(deep.status()).toBe(200);
    expect(await deep.text()).toContain('<div id="root">');
    // The API never answers with the page, even to a browser asking for HTML.
    const api = await get('/v1/nope', 'text/html');
    expect(api.status()).toBe(401);
    expect((await api.json()) as unknown).toMatchObject({ error: { code: 'unauthenticated' } });
    const known = await context.request.get(`${cp.url}/v1/nope`, {
      headers: { accept: 'text/html', authorization: `Bearer ${cp.adminToken}` },
    });
    expect((await known.json()) as unknown).toMatchObject({ error: { code: 'not_found' } });
    const asset = (await root.text()).match(/\/assets\/index-[\w-]+\.js/)![0];
    const js = await get(asset, '*/*');
    expect(js.status()).toBe(200);
    expect(js.headers()['cache-control']).toContain('immutable');
    // Nothing outside the built app is served, however the path is spelled.
    for (const path of ['/assets/..%2Fpackage.json', '/assets/..%2F..%2Fpackage.json', '/assets/%2e%2e/index.html'])
      for (const accept of ['*/*', 'text/html']) {
        const res = await get(path, accept);
        expect(res.status() === 200 ? await res.text() : '', path).not.toMatch(/"name"|"workspaces"/);
      }
    await context.close();
  });

  it('edits a security group through its page; a viewer gets no write buttons', async () => {
    const { context, watch } = await watchedContext(browser, 1280, 800);
    const page = await context.newPage();
    await signIn(page, cp.url, 'alice', PASSWORD);
    await page.getByRole('link', { name: 'Security groups' }).first().click();
    await page.getByRole('heading', { name: 'Security groups' }).waitFor();
    const create = page.getByRole('form', { name: 'New security group' });
    await create.getByLabel('Name').fill('websg');
    await create.getByRole('button', { name: 'Create security group' }).click();
    const group = page.getByRole('region', { name: 'Security group websg' });
    const form = group.getByRole('form', { name: 'Add a rule to websg' });
    // A bad port is refused in the page before anything is sent.
    await form.getByLabel('Port or range').fill('100-10');
    await form.getByRole('button', { name: 'Add rule' }).click();
    await form.getByText(/low before high/).waitFor();
    await form.getByLabel('Port or range').fill('8000-8100');
    await form.getByLabel('Remote CIDR or group').fill('10.0.0.0/8');
    await form.getByLabel('Description').fill('app ports');
    await form.getByRole('button', { name: 'Add rule' }).click();
    await group.getByRole('cell', { name: '8000-8100', exact: true }).waitFor();
    const sg = await admin.securityGroups.get('websg', { project: 'web' });
    expect(sg.spec.rules.map(({ id: _id, ...r }) => r)).toEqual([
      {
        direction: 'ingress',
        protocol: 'tcp',
        port_min: 8000,
        port_max: 8100,
        remote_cidr: '10.0.0.0/8',
        remote_group: null,
        description: 'app ports',
      },
    ]);
    await group.getByLabel('Default egress').selectOption('deny');
    await eventually(
      async () => (await admin.securityGroups.get('websg', { project: 'web' })).spec.egress_default === 'deny',
      'egress default deny',
      30_000,
    );

    const viewer = await watchedContext(browser, 1280, 800);
    const vp = await viewer.context.newPage();
    await signIn(vp, cp.url, 'vera', PASSWORD);
    await vp.goto(`${cp.url}/security-groups`);
    const seen = vp.getByRole('region', { name: 'Security group websg' });
    await seen.getByRole('cell', { name: '8000-8100', exact: true }).waitFor();
    for (const name of [/^Remove rule/, 'Add rule', 'Delete group', 'Create security group'])
      expect(await vp.getByRole('button', { name }).count(), String(name)).toBe(0);
    expect(await seen.getByLabel('Default egress').isDisabled()).toBe(true);

    await group.getByRole('button', { name: /^Remove rule/ }).click();
    await group.getByRole('cell', { name: '8000-8100', exact: true }).waitFor({ state: 'detached' });
    expect((await admin.securityGroups.get('websg', { project: 'web' })).spec.rules).toEqual([]);
    await group.getByRole('button', { name: 'Delete group' }).click();
    await group.waitFor({ state: 'detached' });
    await expect(admin.securityGroups.get('websg', { project: 'web' })).rejects.toMatchObject({
      code: 'security_group_not_found',
    });
    expect([...watch.errors, ...viewer.watch.errors]).toEqual([]);
    await Promise.all([context.close(), viewer.context.close()]);
  }, 120_000);

  it('signs in, creates a VM with the wizard, uses both consoles and the graphs, then stops and deletes it', async () => {
    const { context, watch } = await watchedContext(browser, 1280, 800);
    const page = await context.newPage();
    onTestFailed(async () => {
      // What the browser showed, for the failure report.
      const shot = `${process.env.FLOE_E2E_SHOTS ?? '/tmp'}/floe-web-failure.png`;
      await page.screenshot({ path: shot, fullPage: true }).catch(() => undefined);
      console.error(
        `screenshot: ${shot}\n${
          (await page
            .locator('main')
            .textContent()
            .catch(() => '')) ?? ''
        }`,
      );
      console.error(`agent:\n${agent?.output().slice(-3000)}`);
    });
    page.on('dialog', (d) => void d.accept());
    await signIn(page, cp.url, 'alice', PASSWORD);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'floe_session')!;
    expect(session.httpOnly).toBe(true);
    expect(session.sameSite).toBe('Strict');
    expect(session.secure).toBe(true);
    await page.getByLabel('Project').selectOption('web');

    // An image uploaded from the browser, with progress, becomes ready.
    await page.getByRole('link', { name: 'Images' }).click();
    await page.getByLabel('Name', { exact: true }).fill('blank');
    await page
      .getByLabel(/File/)
      .setInputFiles({ name: 'blank.raw', mimeType: 'application/octet-stream', buffer: Buffer.alloc(4 << 20) });
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('tr', { hasText: 'blank' }).locator('[data-state="ready"]').waitFor({ timeout: 60_000 });
    expect((await admin.images.get('blank', { project: 'web' })).status.state).toBe('ready');

    // A second tab keeps the instance list open: the new VM must appear and reach running there by events alone.
    const list = await context.newPage();
    await list.goto(`${cp.url}/instances`);
    await list.getByRole('heading', { name: 'Instances' }).waitFor();
    let reloads = 0;
    list.on('framenavigated', () => reloads++);

    await page.getByRole('link', { name: 'Instances', exact: true }).click();
    await page.getByRole('link', { name: 'Create instance' }).click();
    await page.getByLabel('Name', { exact: true }).fill('webvm');
    await page.getByRole('radio', { name: /floe-test/ }).check();
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('checkbox', { name: /lan/ }).check();
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByLabel('Machine type').selectOption('nano');
    await page.getByRole('button', { name: 'Next' }).click();
    const userData = page.getByLabel(/User-data/);
    await userData.fill('#cloud-config\nruncmd: [ls\n');
    await page.getByText(/Line \d+:/).waitFor();
    await page.getByRole('button', { name: 'Next' }).click();
    await expect.poll(() => page.locator('[role=alert]').textContent()).toMatch(/User-data line/);
    await userData.fill('#!/bin/sh\necho "HELLO FROM THE WEB UI"\n');
    await page.getByText('Valid script.').waitFor();
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('heading', { name: 'Quota headroom' }).waitFor();
    await page.getByRole('cell', { name: 'vcpus' }).waitFor();
    await page.getByRole('button', { name: 'Create' }).click();
    await page.locator('.progress').waitFor();

    await list.locator('tr[data-instance="webvm"] [data-state="running"]').waitFor({ timeout: 240_000 });
    expect(reloads, 'the list followed the events without reloading').toBe(0);
    await page.waitForURL(/\/instances\/webvm$/, { timeout: 240_000 });

    // The console log (followed) shows the guest's first boot.
    await page.getByRole('link', { name: 'Logs' }).click();
    await expect
      .poll(() => page.getByTestId('log').textContent(), { timeout: 240_000, interval: 1000 })
      .toContain('FLOE-TEST READY');
    expect(await page.getByTestId('log').textContent()).toContain('HELLO FROM THE WEB UI');

    // The serial console: type a command, read its output.
    await page.getByRole('link', { name: 'Serial console' }).click();
    await page.getByText(/^Connected/).waitFor();
    const term = page.getByTestId('serial-console');
    await term.click();
    await page.keyboard.press('Enter');
    await page.keyboard.type('echo WEB-$((6*7))-UI\n', { delay: 20 });
    await expect.poll(() => term.locator('.xterm-rows').textContent(), { timeout: 60_000 }).toContain('WEB-42-UI');

    // The graphical console draws a frame that is not blank.
    await page.getByRole('link', { name: 'Graphical console' }).click();
    await page.getByText(/^Connected/).waitFor({ timeout: 60_000 });
    const screenDrawn = () =>
      page.evaluate(() => {
        // Runs in the page (these tests are type-checked without the DOM's types).
        type Canvas = {
          width: number;
          height: number;
          getContext(k: '2d'): {
            getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
          };
        };
        const doc = (globalThis as unknown as { document: { querySelector(s: string): Canvas | null } }).document;
        const c = doc.querySelector('[data-testid="vnc-screen"] canvas');
        if (!c || c.width === 0 || c.height === 0) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lit = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i]! + d[i + 1]! + d[i + 2]! > 96) lit++;
        return lit;
      });
    await expect.poll(screenDrawn, { timeout: 60_000, interval: 1000 }).toBeGreaterThan(50);
    await page.getByRole('button', { name: 'Send Ctrl-Alt-Del' }).isEnabled();

    // The stats graph draws from the host's history.
    await page.getByRole('link', { name: 'Graphs' }).click();
    await expect
      .poll(async () => (await page.locator('figure[data-chart="CPU"] path.line').getAttribute('d')) ?? '', {
        timeout: 90_000,
        interval: 2000,
      })
      .toMatch(/^M[\d.]+ [\d.]+L/);

    // A second NIC, hot-plugged into the running VM, then unplugged.
    await page.getByRole('link', { name: 'NICs' }).click();
    await page.getByLabel('Network').selectOption('back');
    await page.getByRole('button', { name: 'Attach NIC' }).click();
    await page.getByRole('cell', { name: 'back' }).waitFor({ timeout: 120_000 });
    expect((await admin.instances.nics('webvm', { project: 'web' })).map((n) => n.network_name)).toEqual([
      'lan',
      'back',
    ]);
    await page.getByRole('row', { name: /back/ }).getByRole('button', { name: 'Detach' }).click();
    await page.getByRole('cell', { name: 'back' }).waitFor({ state: 'detached', timeout: 120_000 });

    // The history shows the change of power state as a diff.
    await page.getByRole('link', { name: 'History' }).click();
    await page
      .getByRole('rowheader', { name: 'spec.power_state' })
      .first()
      .waitFor()
      .catch(() => undefined);
    await page.locator('.history li').first().waitFor();

    // A viewer of the project reads the VM but gets no console; a user of another project never sees it.
    const viewer = await watchedContext(browser, 390, 844);
    const vp = await viewer.context.newPage();
    await signIn(vp, cp.url, 'vera', PASSWORD);
    // Until the project's members are read the page knows no role and shows nothing one could change: wait for it.
    await vp.locator('.whoami').getByText('(viewer)').waitFor();
    await vp.locator('tr[data-instance="webvm"]').waitFor();
    await vp.getByRole('link', { name: 'webvm' }).click();
    await vp.getByRole('link', { name: 'Overview' }).waitFor();
    await vp.getByRole('link', { name: 'Logs' }).waitFor();
    expect(await vp.getByRole('link', { name: /console/i }).count()).toBe(0);
    expect(await vp.getByRole('button', { name: 'Stop' }).count()).toBe(0);
    const other = await watchedContext(browser, 1280, 800);
    const op = await other.context.newPage();
    await signIn(op, cp.url, 'bob', PASSWORD);
    await op.getByText(/instances$/).waitFor();
    expect(await op.locator('tr[data-instance]').count()).toBe(0);
    expect(await op.getByLabel('Project').locator('option').allTextContents()).toEqual(['other']);
    const bobsRead = await other.context.request.get(`${cp.url}/v1/instances/webvm?project=web`);
    expect(bobsRead.status()).toBe(404);
    const bobsStop = await other.context.request.post(`${cp.url}/v1/instances/webvm/stop?project=web`, { data: {} });
    expect((await bobsStop.json()) as unknown).toMatchObject({ error: { code: 'csrf_failed' } });

    // Stop, then delete; the list on the other tab follows.
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await page.locator('.page-header [data-state="stopped"]').waitFor({ timeout: 120_000 });
    await list.locator('tr[data-instance="webvm"] [data-state="stopped"]').waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.waitForURL(/\/instances$/);
    await list.locator('tr[data-instance="webvm"]').waitFor({ state: 'detached', timeout: 120_000 });
    await eventually(
      async () => (await admin.instances.list({ project: 'web' })).items.length === 0,
      'VM gone',
      120_000,
    );

    // Signing out clears the session cookie.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect((await context.cookies()).find((c) => c.name === 'floe_session')).toBeUndefined();

    expect([...watch.errors, ...viewer.watch.errors, ...other.watch.errors]).toEqual([]);
    await Promise.all([context.close(), viewer.context.close(), other.context.close()]);
  }, 900_000);
});
