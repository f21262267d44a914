import { readFile, rm } from 'node:fs/promises';
import { FloeClient } from '@floe/client';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { browserMissing, launchBrowser, sidewaysOverflow, signIn, watchedContext } from './browser.js';
import { clientFor, kill, startOnlineAgent, type startAgent } from './helpers.js';
import { awayFromStepEnd, totpAt } from './totp.js';

const skip = browserMissing();
if (skip && !process.env.CI) console.warn(`skipping the web UI pages test: ${skip}`);

const PASSWORD = 'web pages password 1';
const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

/** True when nothing on the page is wider than the viewport (no sideways scrolling on a phone). */
const fitsWidth = (page: Page) =>
  page.evaluate(() => {
    const g = globalThis as unknown as { innerWidth: number; document: { documentElement: { scrollWidth: number } } };
    return g.document.documentElement.scrollWidth <= g.innerWidth;
  });

/**
 * The web UI's pages that the VM journey (web.test.ts) does not open, in Debian's chromium against a real
 * floed and an agent with the fake VM driver: the VPN page on a 390 px phone (a VPN network, a peer whose
 * wg-quick file and QR code are shown once and downloaded, the per-peer links), floating IPs, a project's
 * usage against its limits (changed by an operator), the task panel following an operation, the keyboard,
 * the operator's hosts, users and audit log, a sign-in with TOTP, and an instance page's tabs on a phone.
 * No page logs an error.
 */
describe.skipIf(skip !== null && !process.env.CI)('web UI pages in a real browser', () => {
  let cp: TestControlPlane;
  let admin: FloeClient;
  let agent: ReturnType<typeof startAgent> | undefined;
  let dataDir = '';
  let browser: Browser;

  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open(), { FLOE_HEARTBEAT_MS: '500' });
    admin = clientFor(cp);
    ({ dataDir: dataDir, agent } = await startOnlineAgent(cp, 'pages-host'));
    await admin.projects.create({ name: 'web' });
    await admin.projects.setLimits('web', { instances: 5, vcpus: 8 });
    await admin.images.create({ name: 'debian-12', project: 'web', os: 'debian', format: 'raw' });
    await admin.images.upload('debian-12', Buffer.alloc(1 << 20), { project: 'web' });
    await admin.networks.create({ name: 'lan', project: 'web', ipv4: '10.60.0.0/24', gateway: 'host' });
    await admin.networks.create({
      name: 'internet',
      kind: 'public',
      ipv4: '198.51.100.0/24',
      gateway: '198.51.100.2',
      pool: { start: '198.51.100.50', end: '198.51.100.59' },
      uplink: 'up0',
    });
    await admin.vpnPools.create({
      name: 'edge',
      ipv6: 'fd50::/40',
      ipv4: '10.250.0.0/16',
      hosts: ['pages-host'],
      endpoint: 'vpn.example.org',
    });
    await admin.users.create({ name: 'alice', password: PASSWORD });
    await admin.members.add('web', { user: 'alice', role: 'member' });
    await admin.users.create({ name: 'olga', password: PASSWORD, operator: true });
    browser = await launchBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    if (agent) await kill(agent);
    await admin?.close();
    await cp?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('on a 390 px phone, a member adds a VPN network and a peer, and gets its config and QR code', async () => {
    const { context, watch } = await watchedContext(browser, 390, 844);
    const page = await context.newPage();
    await signIn(page, cp.url, 'alice', PASSWORD);
    await page.getByLabel('Project').selectOption('web');
    expect(await fitsWidth(page), 'the instance list fits 390 px').toBe(true);
    // The navigation is folded into a menu on a phone.
    expect(await page.getByRole('link', { name: 'VPN' }).isVisible()).toBe(false);
    await page.getByRole('button', { name: 'Menu' }).click();
    await page.getByRole('link', { name: 'VPN' }).click();
    await page.getByRole('heading', { name: 'VPN', exact: true }).waitFor();

    const vpnForm = page.getByRole('form', { name: 'New VPN network' });
    await vpnForm.getByLabel('Name').fill('office');
    await vpnForm.getByLabel('Pool').selectOption('edge');
    await vpnForm.getByRole('checkbox', { name: 'lan' }).check();
    await vpnForm.getByRole('button', { name: 'Create VPN network' }).click();
    await page.getByRole('table', { name: 'VPN networks' }).getByRole('cell', { name: 'office' }).waitFor();
    expect((await admin.vpnNetworks.get('office', { project: 'web' })).spec.networks).toHaveLength(1);

    // A peer with a generated key pair: its wg-quick file (with the private key) and QR code, shown this once.
    const peerForm = page.getByRole('form', { name: 'New peer' });
    await peerForm.getByLabel('Name').fill('laptop');
    await peerForm.getByRole('button', { name: 'Add peer' }).click();
    const created = page.getByRole('region', { name: 'New peer config' });
    await created.waitFor();
    const config = (await created.locator('pre.config').textContent()) ?? '';
    expect(config).toMatch(/\[Interface\][\s\S]*PrivateKey = [A-Za-z0-9+/]{43}=/);
    expect(config).toMatch(/\[Peer\][\s\S]*Endpoint = vpn\.example\.org:\d+/);
    const qr = created.getByRole('img', { name: 'QR code of the config of laptop' });
    expect(await qr.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)).toBeGreaterThan(100);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      created.getByRole('link', { name: 'Download office-laptop.conf' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('office-laptop.conf');
    expect(await readFile(await download.path(), 'utf8')).toBe(config);
    expect(await fitsWidth(page), 'the VPN page fits 390 px').toBe(true);
    await created.getByRole('button', { name: 'Done' }).click();
    await created.waitFor({ state: 'detached' });

    // The peer's row links to its file and QR code again, now without the private key floe never kept.
    const row = page.getByRole('table', { name: 'VPN peers' }).getByRole('row', { name: /laptop/ });
    const peer = await admin.vpnPeers.get('laptop', { project: 'web' });
    await row.getByRole('cell', { name: peer.ipv6, exact: false }).waitFor();
    const file = await context.request.get(
      new URL((await row.getByRole('link', { name: 'config' }).getAttribute('href'))!, cp.url).href,
    );
    expect(file.status()).toBe(200);
    const text = await file.text();
    expect(text).toContain('[Interface]');
    expect(text).not.toContain(config.match(/PrivateKey = (\S+)/)![1]!);
    expect(await row.getByRole('link', { name: 'config' }).getAttribute('download')).toBe('office-laptop.conf');
    const png = await context.request.get(
      new URL((await row.getByRole('link', { name: 'QR' }).getAttribute('href'))!, cp.url).href,
    );
    expect(png.status()).toBe(200);
    expect(png.headers()['content-type']).toBe('image/png');
    expect(watch.errors).toEqual([]);
    await context.close();
  }, 120_000);

  it('floating IPs, usage against limits and the task panel for a member; hosts, users and audit for an operator', async () => {
    const { context, watch } = await watchedContext(browser, 1280, 800);
    const page = await context.newPage();
    await signIn(page, cp.url, 'alice', PASSWORD);
    await page.getByLabel('Project').selectOption('web');

    // The task panel follows an operation started elsewhere (here through the API) by events.
    const tasks = page.getByRole('region', { name: 'Tasks' });
    await tasks.getByRole('button', { name: /^Tasks: 0 running, 0 recent/ }).waitFor();
    await tasks.getByRole('button').click();
    const { operation: op1 } = await admin.instances.create({
      name: 'vm1',
      project: 'web',
      image: 'debian-12',
      machine_type: 'nano',
      networks: ['lan'],
    });
    await tasks.locator(`tr[data-operation="${op1.id}"]`, { hasText: 'instance.create' }).waitFor();
    await tasks.locator(`tr[data-operation="${op1.id}"] [data-state="succeeded"]`).waitFor({ timeout: 60_000 });
    await tasks.getByRole('button', { name: /^Tasks: 0 running, 1 recent/ }).waitFor();

    // The keyboard: on a fresh page the first Tab reaches the skip link; a navigation link opens with Enter.
    await page.goto(`${cp.url}/instances`);
    await page.getByRole('heading', { name: 'Instances' }).waitFor();
    await page.keyboard.press('Tab');
    expect(
      await page.evaluate(
        () =>
          (globalThis as unknown as { document: { activeElement: { textContent: string } } }).document.activeElement
            .textContent,
      ),
    ).toBe('Skip to content');
    await page.getByRole('link', { name: 'Floating IPs' }).focus();
    await page.keyboard.press('Enter');
    const fipForm = page.getByRole('form', { name: 'New floating IP' });
    await fipForm.getByLabel('Name').fill('fip1');
    await fipForm.getByLabel('Attach to').selectOption('vm1');
    await fipForm.getByRole('button', { name: 'Create floating IP' }).click();
    const fipRow = page.getByRole('table', { name: 'Floating IPs' }).getByRole('row', { name: /fip1/ });
    await fipRow.waitFor();
    // Name, address and the instance it is attached to (the row's own cells, not the attach form's choices).
    await expect
      .poll(async () => (await fipRow.getByRole('cell').allTextContents()).slice(0, 3))
      .toEqual(['fip1', expect.stringMatching(/^198\.51\.100\.5\d$/), 'vm1']);
    const fip = await admin.floatingIps.get('fip1', { project: 'web' });
    expect(fip.instance).toBe((await admin.instances.get('vm1', { project: 'web' })).id);

    await page.getByRole('link', { name: 'Projects' }).click();
    await page.getByRole('link', { name: 'web', exact: true }).click();
    await page.getByRole('heading', { name: 'Usage and limits' }).waitFor();
    const instances = page.getByRole('row', { name: /^instances / });
    await expect.poll(() => instances.getByRole('cell').allTextContents()).toEqual(['instances', '1', '5', '4', '']);
    expect(await page.getByRole('meter', { name: 'vcpus used' }).getAttribute('aria-valuemax')).toBe('8');
    // A member reads the members and limits but gets nothing to change them with.
    await page.getByRole('cell', { name: 'alice', exact: true }).waitFor();
    for (const name of ['Remove', 'Add member', 'Save limits'])
      expect(await page.getByRole('button', { name }).count(), name).toBe(0);
    expect(await page.getByLabel('Role of alice').isDisabled()).toBe(true);
    expect(watch.errors).toEqual([]);
    await context.close();

    const op = await watchedContext(browser, 1280, 800);
    const opPage = await op.context.newPage();
    await signIn(opPage, cp.url, 'olga', PASSWORD);
    // The operator changes the project's limits on its page: a bad number is refused there, then saved.
    await opPage.goto(`${cp.url}/projects/web`);
    const limits = opPage.getByRole('form', { name: 'Limits' });
    await expect.poll(() => limits.getByLabel('instances', { exact: true }).inputValue()).toBe('5');
    await limits.getByLabel('vcpus', { exact: true }).fill('-2');
    await limits.getByRole('button', { name: 'Save limits' }).click();
    await limits.getByText(/^vcpus: a whole number/).waitFor();
    await limits.getByLabel('vcpus', { exact: true }).fill('');
    await limits.getByLabel('instances', { exact: true }).fill('3');
    await limits.getByRole('button', { name: 'Save limits' }).click();
    await limits.getByText('Limits saved.').waitFor();
    expect((await admin.projects.limits('web')).limits).toEqual({ instances: 3 });
    await expect
      .poll(() =>
        opPage
          .getByRole('row', { name: /^instances / })
          .getByRole('cell')
          .allTextContents(),
      )
      .toEqual(['instances', '1', '3', '2', '']);
    await opPage.getByRole('link', { name: 'Hosts' }).click();
    const host = opPage.getByRole('article', { name: 'Host pages-host' });
    await host.getByText(/agent /).waitFor();
    await opPage.getByRole('button', { name: 'New join token' }).click();
    await opPage.getByText('Join token (1 hour)').waitFor();
    await opPage.getByRole('link', { name: 'Users' }).click();
    await opPage.getByRole('cell', { name: 'alice', exact: true }).waitFor();
    await opPage.getByRole('link', { name: 'Audit log' }).click();
    await opPage.getByRole('cell', { name: 'alice', exact: true }).first().waitFor();
    expect(op.watch.errors).toEqual([]);
    await op.context.close();
  }, 120_000);

  it('asks a user with TOTP for the code after the password, refuses a wrong one and signs in with the right one', async () => {
    await admin.users.create({ name: 'tina', password: PASSWORD });
    await admin.members.add('web', { user: 'tina', role: 'viewer' });
    const { token } = await new FloeClient({ url: cp.url, ca: cp.ca.certPem }).auth.login({
      username: 'tina',
      password: PASSWORD,
    });
    const tina = clientFor(cp, token);
    const enrolment = await tina.users.totpEnrol();
    await awayFromStepEnd();
    const now = Date.now();
    await tina.users.totpConfirm(totpAt(enrolment.secret, now - 30_000));
    await tina.close();

    const { context, watch } = await watchedContext(browser, 390, 844);
    const page = await context.newPage();
    await page.goto(cp.url);
    await page.getByLabel('Username').fill('tina');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const code = page.getByLabel('Authentication code');
    await code.waitFor();
    expect((await context.cookies()).find((c) => c.name === 'floe_session')).toBeUndefined();
    await code.fill(String((Number(totpAt(enrolment.secret, now)) + 1) % 1_000_000).padStart(6, '0'));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    await code.fill(totpAt(enrolment.secret, now));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Instances' }).waitFor();
    expect((await context.cookies()).find((c) => c.name === 'floe_session')?.httpOnly).toBe(true);
    // Chromium itself logs the two 401 answers (code required, wrong code); nothing else went wrong.
    expect(watch.errors).toEqual([expect.stringMatching(/status of 401/), expect.stringMatching(/status of 401/)]);
    await context.close();
  }, 120_000);

  it('on a 390 px phone, the instance page fits the screen: its tabs wrap and the keyboard walks them', async () => {
    await admin.instances.create({
      name: 'phone-1',
      project: 'web',
      image: 'debian-12',
      machine_type: 'nano',
      networks: ['lan'],
    });
    const { context, watch } = await watchedContext(browser, 390, 844);
    const page = await context.newPage();
    await signIn(page, cp.url, 'alice', PASSWORD);
    await page.getByLabel('Project').selectOption('web');
    await page.getByRole('link', { name: 'phone-1' }).click();
    const tabs = page.getByRole('navigation', { name: 'Instance' });
    const labels = ['Overview', 'Serial console', 'Graphical console', 'Logs', 'Graphs', 'NICs', 'History'];
    await tabs.getByRole('link', { name: 'Operations' }).waitFor();
    await page.getByText('Restart policy').waitFor();
    // Nothing reaches past the screen's edge and nothing scrolls sideways, the tab bar included.
    expect(await sidewaysOverflow(page)).toEqual([]);
    const width = 390;
    for (const name of [...labels, 'Operations']) {
      const box = (await tabs.getByRole('link', { name, exact: true }).boundingBox())!;
      expect(box.x, name).toBeGreaterThanOrEqual(0);
      expect(box.x + box.width, name).toBeLessThanOrEqual(width);
    }
    expect(await tabs.getByRole('link', { name: 'Overview' }).getAttribute('aria-current')).toBe('page');

    // The keyboard: Tab walks the tabs in their order, Enter opens one, which is then the current one.
    await tabs.getByRole('link', { name: 'Overview' }).focus();
    const focused = () =>
      page.evaluate(
        () =>
          (globalThis as unknown as { document: { activeElement: { textContent: string } } }).document.activeElement
            .textContent,
      );
    const walked = [await focused()];
    for (let n = 1; n < labels.length + 1; n++) {
      await page.keyboard.press('Tab');
      walked.push(await focused());
    }
    expect(walked).toEqual([...labels, 'Operations']);
    for (let n = 0; n < 4; n++) await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('Logs');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/instances\/phone-1\/logs$/);
    await expect.poll(() => tabs.getByRole('link', { name: 'Logs' }).getAttribute('aria-current')).toBe('page');
    expect(await tabs.getByRole('link', { name: 'Overview' }).getAttribute('aria-current')).toBeNull();
    expect(await sidewaysOverflow(page)).toEqual([]);
    expect(watch.errors).toEqual([]);
    await context.close();
  }, 120_000);
});
