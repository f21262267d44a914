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

/**
 * What would make a phone user scroll sideways: the page itself wider than the viewport, an element
 * reaching past its right edge, or an element that scrolls sideways inside the page (as a tab bar with
 * `overflow-x: auto` does, which the page's own width does not show). Each as `tag.class (why)`; [] when
 * everything fits.
 */
export function sidewaysOverflow(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    interface El {
      tagName: string;
      className: unknown;
      scrollWidth: number;
      clientWidth: number;
      getBoundingClientRect(): { left: number; right: number; width: number; height: number };
    }
    const g = globalThis as unknown as {
      innerWidth: number;
      document: { documentElement: El; querySelectorAll(s: string): Iterable<El> };
      getComputedStyle(e: El): { overflowX: string };
    };
    const width = g.innerWidth;
    const out: string[] = [];
    const root = g.document.documentElement;
    if (root.scrollWidth > width) out.push(`html (${root.scrollWidth} px wide)`);
    for (const el of g.document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      const cls = typeof el.className === 'string' && el.className.trim() !== '' ? el.className.trim() : '';
      const name = el.tagName.toLowerCase() + (cls === '' ? '' : `.${cls.split(/\s+/).join('.')}`);
      if (r.right > width + 0.5) out.push(`${name} (right edge at ${Math.round(r.right)} px)`);
      const ox = g.getComputedStyle(el).overflowX;
      if ((ox === 'auto' || ox === 'scroll') && el.scrollWidth > el.clientWidth + 1)
        out.push(`${name} (scrolls sideways: ${el.scrollWidth} px in ${el.clientWidth} px)`);
    }
    return out;
  });
}
