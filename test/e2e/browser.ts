import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium, which the `floe` launcher installs. */
export const CHROMIUM = process.env.FLOE_CHROMIUM ?? '/usr/bin/chromium';

/** Why browser tests cannot run here, or null. */
export function browserMissing(): string | null {
  return existsSync(CHROMIUM) ? null : `${CHROMIUM} is not installed (apt-get install chromium)`;
}

/** Starts a headless chromium (no sandbox: tests run as root). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
}

/** Everything the pages of a context wrote to the console as errors, and uncaught exceptions. */
export interface ConsoleWatch {
  errors: string[];
}

/** A browser context (floe's own CA is not in chromium's store) whose console errors are collected. */
export async function watchedContext(
  browser: Browser,
  width: number,
  height: number,
): Promise<{ context: BrowserContext; watch: ConsoleWatch }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width, height } });
  const watch: ConsoleWatch = { errors: [] };
  context.on('page', (page) => watchPage(page, watch));
  return { context, watch };
}

function watchPage(page: Page, watch: ConsoleWatch): void {
  page.on('console', (m) => {
    if (m.type() === 'error') watch.errors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => watch.errors.push(`${page.url()}: uncaught ${e.message}`));
}

/** Signs in through the form of the web UI and waits for the instance list. */
export async function signIn(page: Page, url: string, username: string, password: string): Promise<void> {
  await page.goto(url);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Instances' }).waitFor();
}
