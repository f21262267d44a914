import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { firstBootReport } from './reports.js';
import { desiredInstance } from '@floe/testkit';
import { floeVendorPart, seedVendorData, vendorData } from './vendor-data.js';

describe('vendorData', () => {
  it("is a MIME multipart with floe's cloud-config part (phone_home, webhook reporter)", () => {
    const doc = vendorData(null);
    const boundary = /boundary="(floe-[0-9a-f]{24})"/.exec(doc)![1]!;
    expect(doc).toBe(
      `Content-Type: multipart/mixed; boundary="${boundary}"\nMIME-Version: 1.0\n\n` +
        `--${boundary}\n` +
        'Content-Type: text/cloud-config; charset="utf-8"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\nContent-Disposition: attachment; filename="floe.cfg"\n\n' +
        '#cloud-config\nphone_home:\n  url: "http://169.254.169.254/phone-home"\n  post:\n    - instance_id\n    - hostname\n  tries: 3\n' +
        'reporting:\n  floe:\n    type: webhook\n    endpoint: "http://169.254.169.254/report"\n    timeout: 5\n    retries: 2\n' +
        `--${boundary}--\n`,
    );
    // The same document on every request.
    expect(vendorData(null)).toBe(doc);
  });

  it("floe's part is the cloud-config it always was", () => {
    const part = floeVendorPart();
    expect(part.startsWith('#cloud-config\n')).toBe(true);
    expect(parse(part, { version: '1.1' })).toEqual({
      phone_home: { url: 'http://169.254.169.254/phone-home', post: ['instance_id', 'hostname'], tries: 3 },
      reporting: { floe: { type: 'webhook', endpoint: 'http://169.254.169.254/report', timeout: 5, retries: 2 } },
    });
  });

  it("adds the operator's vendor-data as a part whose type cloud-init guesses from its first line", () => {
    const own = '#!/bin/sh\necho vendor\n';
    const doc = vendorData(own);
    const boundary = /boundary="(floe-[0-9a-f]{24})"/.exec(doc)![1]!;
    expect(boundary).not.toBe(/boundary="(floe-[0-9a-f]{24})"/.exec(vendorData(null))![1]);
    const parts = doc.split(`--${boundary}`);
    expect(parts).toHaveLength(4);
    expect(parts[1]).toContain(floeVendorPart().trimEnd());
    expect(parts[2]).toBe(
      '\nContent-Type: text/plain; charset="utf-8"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\nContent-Disposition: attachment; filename="vendor-data"\n\n#!/bin/sh\necho vendor\n',
    );
    expect(parts[3]).toBe('--\n');
  });
});

describe('firstBootReport', () => {
  const now = new Date('2026-01-02T03:04:05.000Z');
  const at = '2026-01-02T03:04:05.000Z';
  const hook = (e: Record<string, unknown>) => firstBootReport('webhook', 'application/json', JSON.stringify(e), now);

  it('takes phone_home as the end of the first boot', () => {
    expect(
      firstBootReport('phone-home', 'application/x-www-form-urlencoded', 'instance_id=i-1&hostname=x', now),
    ).toEqual({ type: 'finished', result: 'ok', at, detail: 'phone_home' });
  });

  it("reads the result of modules-final's finish event, and nothing else", () => {
    const base = {
      name: 'modules-final',
      event_type: 'finish',
      origin: 'cloudinit',
      timestamp: 1.5,
      description: 'running modules for final',
    };
    expect(hook({ ...base, result: 'SUCCESS' })).toEqual({
      type: 'finished',
      result: 'ok',
      at,
      detail: 'SUCCESS: running modules for final',
    });
    expect(hook({ ...base, result: 'WARN' })).toEqual({
      type: 'finished',
      result: 'ok',
      at,
      detail: 'WARN: running modules for final',
    });
    expect(hook({ ...base, result: 'FAIL' })).toEqual({
      type: 'finished',
      result: 'failed',
      at,
      detail: 'FAIL: running modules for final',
    });
    expect(hook({ ...base, event_type: 'start' })).toBeNull();
    expect(hook({ ...base, name: 'modules-config', result: 'FAIL' })).toBeNull();
    expect(hook({ ...base, result: 'MAYBE' })).toBeNull();
    expect(
      firstBootReport('webhook', 'application/x-www-form-urlencoded', 'name=modules-final&result=FAIL', now),
    ).toBeNull();
    expect(firstBootReport('webhook', 'application/json', 'null', now)).toBeNull();
  });
});

describe('seedVendorData', () => {
  const nic = {
    id: 'nic_1',
    network_id: 'net_1',
    vni: 1,
    index: 0,
    mac: '52:54:00:00:00:01',
    ipv4: '10.0.0.5',
    ipv4_prefix: 24,
    ipv6: null,
    ipv6_prefix: null,
    gateway4: null,
    gateway6: null,
    mtu: 1450,
    dns_servers: [],
  };

  it("gives a seeded VM with NICs floe's part before its own vendor-data, so it reports first boot to the service", () => {
    expect(seedVendorData(desiredInstance({ nics: [nic], vendor_data: '#!/bin/sh\necho vendor\n' }))).toBe(
      vendorData('#!/bin/sh\necho vendor\n'),
    );
    expect(seedVendorData(desiredInstance({ nics: [nic] }))).toBe(vendorData(null));
  });

  it('gives a VM without NICs, which cannot reach the service, only its own', () => {
    expect(seedVendorData(desiredInstance({ nics: [], vendor_data: '#cloud-config\n' }))).toBe('#cloud-config\n');
    expect(seedVendorData(desiredInstance({}))).toBeNull();
  });
});
