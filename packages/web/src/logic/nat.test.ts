import { describe, expect, it } from 'vitest';
import { changeText, listenText, parsePort } from './nat.js';
import { configFileName, splitList } from './vpn.js';
import { parseRoute, routePath } from './route.js';

describe('parsePort', () => {
  it('reads ports and tells empty from wrong', () => {
    expect(parsePort(' 2222 ')).toBe(2222);
    expect(parsePort('1')).toBe(1);
    expect(parsePort('65535')).toBe(65535);
    expect(parsePort('')).toBeUndefined();
    for (const bad of ['0', '65536', '22a', '-1', '1.5', '123456']) expect(parsePort(bad), bad).toBeNull();
  });
});

describe('listenText', () => {
  it('names the floating IP or the host', () => {
    expect(listenText({ address: '203.0.113.5', port: 80, protocol: 'tcp' })).toBe('203.0.113.5:80/tcp');
    expect(listenText({ address: null, port: 2222, protocol: 'udp' })).toBe('host:2222/udp');
  });
});

describe('changeText', () => {
  const ip = { name: 'web', address: '203.0.113.5' };
  it('says an attach or detach waits for the host until its operation ends', () => {
    expect(changeText(ip, 'b', { status: 'pending', message: 'requested' })).toBe(
      'Attaching web (203.0.113.5) to b: waiting for its host…',
    );
    expect(changeText(ip, null, { status: 'running', message: 'running' })).toBe(
      'Detaching web (203.0.113.5): waiting for its host…',
    );
  });
  it('says where it went once done', () => {
    expect(changeText(ip, 'b', { status: 'succeeded', message: 'running' })).toBe('web (203.0.113.5) now goes to b.');
    expect(changeText(ip, null, { status: 'succeeded', message: 'stopped' })).toBe('web (203.0.113.5) is detached.');
  });
  it('says why not when it failed or was cancelled', () => {
    expect(
      changeText(ip, 'b', { status: 'failed', message: 'error', error: { message: 'the host reported an error' } }),
    ).toBe('Attaching web (203.0.113.5) to b failed: the host reported an error.');
    expect(changeText(ip, 'b', { status: 'failed', message: '', error: null })).toBe(
      'Attaching web (203.0.113.5) to b failed: no reason given.',
    );
    expect(changeText(ip, null, { status: 'cancelled', message: 'the instance was deleted' })).toBe(
      'Detaching web (203.0.113.5) was cancelled (the instance was deleted).',
    );
  });
});

describe('routes of the network pages', () => {
  it('round-trips', () => {
    for (const page of ['security-groups', 'floating-ips', 'vpn'] as const) {
      expect(parseRoute(`/${page}`)).toEqual({ page });
      expect(routePath({ page })).toBe(`/${page}`);
    }
  });
});

describe('configFileName', () => {
  it('fits a wg-quick interface name', () => {
    expect(configFileName('office', 'laptop')).toBe('office-laptop.conf');
    expect(configFileName('office', 'a very long laptop name')).toBe('office.conf');
    expect(configFileName('a-network-with-a-long-name', 'x')).toBe('a-network-with-.conf');
    expect(configFileName('ö', 'p')).toBe('p.conf');
    expect(configFileName('..', '')).toBe('wg0.conf');
    for (const [n, p] of [
      ['office', 'laptop'],
      ['x'.repeat(40), 'y'],
      ['ü ß', 'phone'],
    ] as const)
      expect(configFileName(n, p)).toMatch(/^[A-Za-z0-9_=+][A-Za-z0-9_=+.-]{0,14}\.conf$/);
  });
});

describe('splitList', () => {
  it('splits on commas and blanks', () => {
    expect(splitList(' gw-1, gw-2 gw-1 ,')).toEqual(['gw-1', 'gw-2']);
    expect(splitList('')).toEqual([]);
  });
});
