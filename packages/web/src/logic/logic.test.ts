import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { csrfFromCookies } from '@floe/client/browser';
import { mergePoints, niceMax, svgPath, toSeries } from './chart.js';
import { checkUserData } from './cloud-config.js';
import { diff } from './diff.js';
import { ago, formatBytes, formatMib } from './format.js';
import { allFit, headroom, limitsChange } from './headroom.js';
import { labelQuery, matchesLabels, parseLabelFilter } from './labels.js';
import { actionOf, applyAction, canDo, upsert, type LiveInstance } from './live.js';
import { closeText, mergeOperation } from './ops.js';
import { parseRoute, routePath } from './route.js';

const inst = (id: string, name: string, state: string): LiveInstance => ({
  id,
  name,
  project: 'p',
  labels: {},
  status: { state },
  spec: { vcpus: 1, memory_mib: 256, disk_gib: 1 },
});
const ev = (type: string, id: string, data: Record<string, unknown> = {}, kind = 'instance') => ({
  seq: 1,
  type,
  kind,
  resource_id: id,
  project: 'p',
  data,
});

describe('label filters', () => {
  it('parses terms, builds the API query and matches', () => {
    const terms = parseLabelFilter(' env=prod,  tier  a=b=c ,');
    expect(terms).toEqual([{ key: 'env', value: 'prod' }, { key: 'tier' }, { key: 'a', value: 'b=c' }]);
    expect(labelQuery(terms)).toEqual(['env=prod', 'tier', 'a=b=c']);
    expect(matchesLabels({ env: 'prod', tier: 'web', a: 'b=c' }, terms)).toBe(true);
    expect(matchesLabels({ env: 'dev', tier: 'web', a: 'b=c' }, terms)).toBe(false);
    expect(matchesLabels({ env: 'prod', a: 'b=c' }, terms)).toBe(false);
    expect(parseLabelFilter('=x')).toEqual([]);
  });
});

describe('live instance list', () => {
  it('turns events into actions and applies them', () => {
    const list = [inst('i1', 'a', 'starting'), inst('i2', 'b', 'running')];
    const running = applyAction(list, actionOf(ev('instance.state', 'i1', { state: 'running' })));
    expect(running.map((i) => i.status.state)).toEqual(['running', 'running']);
    expect(applyAction(running, actionOf(ev('instance.state', 'i1', { state: 'running' })))).toBe(running);
    expect(applyAction(list, actionOf(ev('instance.state', 'i2', { state: 'deleted' }))).map((i) => i.id)).toEqual([
      'i1',
    ]);
    expect(applyAction(list, actionOf(ev('resource.deleted', 'i1'))).map((i) => i.id)).toEqual(['i2']);
    expect(actionOf(ev('resource.created', 'i9'))).toEqual({ kind: 'refetch', id: 'i9' });
    expect(actionOf(ev('resource.created', 'net1', {}, 'network'))).toEqual({ kind: 'none' });
    expect(applyAction(list, actionOf(ev('instance.state', 'nope', { state: 'running' })))).toBe(list);
    expect(upsert(list, inst('i0', '0-first', 'pending')).map((i) => i.id)).toEqual(['i0', 'i1', 'i2']);
    expect(upsert(list, inst('i1', 'a', 'stopped'))[0]!.status.state).toBe('stopped');
  });
  it('offers bulk actions only where they apply', () => {
    expect(canDo('start', 'stopped')).toBe(true);
    expect(canDo('start', 'running')).toBe(false);
    expect(canDo('stop', 'running')).toBe(true);
    expect(canDo('stop', 'stopped')).toBe(false);
    expect(canDo('delete', 'deleting')).toBe(false);
  });
});

describe('user-data checks', () => {
  it('accepts cloud-config mappings, scripts and empty, and names the bad line', () => {
    expect(checkUserData('', parse)).toEqual({ ok: true, kind: 'empty' });
    expect(checkUserData('#cloud-config\nruncmd:\n  - [ls, -l]\n', parse)).toEqual({ ok: true, kind: 'cloud-config' });
    expect(checkUserData('#!/bin/sh\necho hi', parse)).toEqual({ ok: true, kind: 'script' });
    const bad = checkUserData('#cloud-config\nruncmd: [ls\npackages: x\n', parse);
    expect(bad.ok).toBe(false);
    expect(bad.ok ? 0 : bad.line).toBeGreaterThanOrEqual(2);
    expect(checkUserData('#cloud-config\n- a\n- b\n', parse)).toMatchObject({ ok: false, message: /mapping/ });
    expect(checkUserData('#cloud-config\nruncmd: echo\n', parse)).toMatchObject({ ok: false, message: /runcmd/ });
    expect(checkUserData('hello', parse)).toMatchObject({ ok: false, line: 1 });
    expect(checkUserData(`#!/bin/sh\n${'x'.repeat(70_000)}`, parse)).toMatchObject({ ok: false });
  });
});

describe('quota headroom', () => {
  it('compares the request with what is left', () => {
    const h = headroom(
      [
        { dimension: 'vcpus', limit: 4, used_subtree: 3, available: 1 },
        { dimension: 'memory_mib', limit: null, used_subtree: 0, available: null },
        { dimension: 'image_bytes', limit: 10, used_subtree: 0, available: 10 },
      ],
      { instances: 1, vcpus: 2, memory_mib: 512, disk_gib: 1, nics: 1 },
    );
    expect(h).toEqual([
      { dimension: 'vcpus', asked: 2, available: 1, fits: false },
      { dimension: 'memory_mib', asked: 512, available: null, fits: true },
    ]);
    expect(allFit(h)).toBe(false);
    expect(allFit(h.slice(1))).toBe(true);
  });

  it("turns the limits editor's fields into a change: numbers, and null for empty", () => {
    expect(limitsChange({ instances: '5', vcpus: '', memory_mib: ' 2048 ', floating_ips: '0' })).toEqual({
      instances: 5,
      vcpus: null,
      memory_mib: 2048,
      floating_ips: 0,
    });
    for (const bad of ['-1', '1.5', 'ten', '1e3', '99999999999999999'])
      expect(() => limitsChange({ vcpus: bad }), bad).toThrow(/^vcpus: a whole number/);
  });
});

describe('history diffs', () => {
  it('lists changed leaves with their paths', () => {
    expect(
      diff(
        { spec: { vcpus: 1, power_state: 'running', ssh_keys: ['a'] }, labels: {} },
        { spec: { vcpus: 1, power_state: 'stopped', ssh_keys: ['a', 'b'] }, labels: { env: 'x' } },
      ),
    ).toEqual([
      { path: 'labels.env', before: undefined, after: 'x' },
      { path: 'spec.power_state', before: 'running', after: 'stopped' },
      { path: 'spec.ssh_keys', before: ['a'], after: ['a', 'b'] },
    ]);
    expect(diff(null, { a: 1 })).toEqual([{ path: '', before: null, after: { a: 1 } }]);
    expect(diff(undefined, { a: { b: 1 } })).toEqual([{ path: 'a.b', before: undefined, after: 1 }]);
  });
});

describe('graphs', () => {
  it('turns history points into series, merges polls and draws paths', () => {
    const pt = (at: string, cpu: number | null, mem: number | null, rx: number | null = null) => ({
      at,
      cpu_percent: cpu,
      memory_bytes: mem,
      disk_read_bytes_per_second: null,
      disk_write_bytes_per_second: null,
      net_rx_bytes_per_second: rx,
      net_tx_bytes_per_second: null,
    });
    const s = toSeries([
      pt('2026-01-01T00:00:10Z', 50, 2, 100),
      pt('2026-01-01T00:00:00Z', null, 1),
      pt('2026-01-01T00:00:20Z', 10, 3),
    ]);
    const t10 = Date.parse('2026-01-01T00:00:10Z');
    expect(s.cpu).toEqual([
      { t: t10, v: 50 },
      { t: t10 + 10_000, v: 10 },
    ]);
    expect(s.net_rx).toEqual([{ t: t10, v: 100 }]);
    expect(s.memory.map((p) => p.v)).toEqual([1, 2, 3]);
    const merged = mergePoints(
      [pt('2026-01-01T00:00:00Z', 1, 1), pt('2026-01-01T00:00:10Z', 2, 2)],
      [pt('2026-01-01T00:00:10Z', 3, 3), pt('2026-01-01T00:00:20Z', 4, 4)],
      t10,
    );
    expect(merged.map((p) => p.cpu_percent)).toEqual([3, 4]);
    expect(
      svgPath(
        [
          { t: 0, v: 0 },
          { t: 10, v: 1 },
        ],
        0,
        10,
        1,
        100,
        50,
      ),
    ).toBe('M0 50L100 0');
    expect(svgPath([{ t: 5, v: 3 }], 0, 10, 2, 100, 50)).toBe('M50 0');
    expect(svgPath([], 0, 10, 1, 100, 50)).toBe('');
    expect([niceMax([]), niceMax([0.3]), niceMax([3]), niceMax([17]), niceMax([100])]).toEqual([1, 0.5, 5, 20, 100]);
  });
});

describe('formats, routes and cookies', () => {
  it('formats sizes and times', () => {
    expect([formatBytes(null), formatBytes(512), formatBytes(1536), formatBytes(3 * 1024 ** 3)]).toEqual([
      '–',
      '512 B',
      '1.5 KiB',
      '3.0 GiB',
    ]);
    expect([formatMib(512), formatMib(2048), formatMib(1536)]).toEqual(['512 MiB', '2 GiB', '1.5 GiB']);
    expect(ago('2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:02:00Z'))).toBe('2 min ago');
  });
  it('maps paths to pages and back', () => {
    expect(parseRoute('/')).toEqual({ page: 'instances' });
    expect(parseRoute('/new')).toEqual({ page: 'create' });
    expect(parseRoute('/instances/new')).toEqual({ page: 'instance', id: 'new', tab: 'overview' });
    expect(parseRoute('/instances/web/console')).toEqual({ page: 'instance', id: 'web', tab: 'console' });
    expect(parseRoute('/instances/web/bogus').page).toBe('not-found');
    expect(parseRoute('/projects/shop?x=1')).toEqual({ page: 'project', id: 'shop' });
    expect(parseRoute('/hosts')).toEqual({ page: 'hosts' });
    for (const p of ['/instances', '/new', '/instances/a%20b/graphs', '/projects/x', '/audit'])
      expect(routePath(parseRoute(p))).toBe(p);
  });
  it('reads the CSRF token from the cookies', () => {
    expect(csrfFromCookies('a=1; floe_csrf=abc=; b=2')).toBe('abc=');
    expect(csrfFromCookies('a=1')).toBeUndefined();
  });
});

describe('task panel and console ends', () => {
  it('keeps the newest operations first, one row each, at most the limit', () => {
    const op = (id: string, at: string) => ({ id, created_at: at });
    let list = [op('a', '2026-01-01T00:00:01Z'), op('b', '2026-01-01T00:00:00Z')];
    list = mergeOperation(list, op('c', '2026-01-01T00:00:02Z'));
    expect(list.map((o) => o.id)).toEqual(['c', 'a', 'b']);
    list = mergeOperation(list, { id: 'b', created_at: '2026-01-01T00:00:00Z' }, 2);
    expect(list.map((o) => o.id)).toEqual(['c', 'a']);
  });
  it('says why a console closed', () => {
    expect(closeText(1000, '')).toBe('Console closed.');
    expect(closeText(4409, 'invalid_state')).toBe('Console refused: invalid_state (HTTP 409).');
    expect(closeText(1006, '')).toBe('Console connection lost (1006).');
  });
});
