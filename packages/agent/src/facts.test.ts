import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { checkUnderlay, detectUnderlay, KVM_PROBE_PREFIX, probeFacts, runKvmProbe } from './facts.js';
import { which } from './host/exec.js';

// Command lines of every running process that mention the probe's temp dir prefix.
async function probeProcesses(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(KVM_PROBE_PREFIX)) found.push(cmdline.replaceAll('\0', ' '));
  }
  return found;
}

async function probeDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith(KVM_PROBE_PREFIX));
}

const haveQemu = (await which('qemu-system-x86_64')) !== null;
const haveKvm = existsSync('/dev/kvm');

describe('KVM probe', () => {
  it.runIf(haveQemu && haveKvm)('runs a real probe guest and leaves nothing behind', async () => {
    const dirsBefore = await probeDirs();
    const result = await runKvmProbe({ kernel: process.env.FLOE_TEST_KERNEL ?? null });
    expect(result.present).toBe(true);
    expect(typeof result.usable).toBe('boolean');
    expect(result.detail.length).toBeGreaterThan(0);
    if (!result.usable) expect(result.detail).toMatch(/using TCG/);
    expect(await probeProcesses()).toEqual([]);
    expect(await probeDirs()).toEqual(dirsBefore);
  });

  it.skipIf(haveQemu && haveKvm)('needs QEMU and /dev/kvm', () => {
    console.log('skipped: the KVM probe test needs qemu-system-x86_64 and /dev/kvm');
  });

  it('reports a missing QEMU without starting anything', async () => {
    const result = await runKvmProbe({ qemu: 'qemu-system-floe-does-not-exist' });
    expect(result.usable).toBe(false);
    expect(result.detail).toMatch(/QEMU|no \/dev\/kvm/);
  });
});

describe('probeFacts', () => {
  it('describes this host', async () => {
    const facts = await probeFacts({
      dataDir: `${tmpdir()}/floe-facts-missing/agent`,
      driver: 'fake',
      kvm: { kernel: null },
    });
    expect(facts.vm_driver).toBe('fake');
    expect(facts.cpus).toBeGreaterThanOrEqual(1);
    expect(facts.memory_mib).toBeGreaterThan(0);
    expect(facts.disk_free_gib).toBeGreaterThan(0);
    expect(facts.hostname.length).toBeGreaterThan(0);
    expect(facts.agent_version).toMatch(/^\d+\.\d+\.\d+/);
    expect(facts.qemu_version === null).toBe(!haveQemu);
    expect(facts.accelerator).toBe(!haveQemu ? 'none' : facts.kvm.usable ? 'kvm' : 'tcg');
    expect(typeof facts.wireguard_kernel).toBe('boolean');
  });
});

describe('underlay address', () => {
  it('is the source address toward the control plane', async () => {
    expect(await detectUnderlay('https://127.0.0.1:8443')).toBe('127.0.0.1');
    expect(await detectUnderlay('https://[::1]:8443')).toBe(null);
    expect(await detectUnderlay('not a url')).toBe(null);
  });

  it('accepts only unicast IPv4 from the flag', () => {
    expect(checkUnderlay('192.0.2.7')).toBe('192.0.2.7');
    for (const bad of ['0.0.0.0', '239.1.1.1', 'fd00::1', '10.0.0.1/24', 'host', ''])
      expect(() => checkUnderlay(bad)).toThrow(/unicast IPv4/);
  });

  it('is reported in the facts', async () => {
    const dir = tmpdir();
    expect(
      (await probeFacts({ dataDir: dir, driver: 'fake', underlay: '192.0.2.9', kvm: { kernel: null } })).underlay_ipv4,
    ).toBe('192.0.2.9');
    expect(
      (await probeFacts({ dataDir: dir, driver: 'fake', server: 'https://127.0.0.1:1', kvm: { kernel: null } }))
        .underlay_ipv4,
    ).toBe('127.0.0.1');
  });
});
