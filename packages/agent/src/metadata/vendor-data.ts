import { createHash } from 'node:crypto';
import type { DesiredInstance } from '@floe/api';
import { cloudYaml } from '../drivers/vm/cloud-yaml.js';

/** The address guests reach the metadata service at (IPv4). */
export const METADATA_IPV4 = '169.254.169.254';
/** The address guests reach the metadata service at (IPv6). */
export const METADATA_IPV6 = 'fd00:ec2::254';
/** The path cloud-init's phone_home module posts to. */
export const PHONE_HOME_PATH = '/phone-home';
/** The path cloud-init's webhook reporter posts its events to. */
export const REPORT_PATH = '/report';

/**
 * floe's own cloud-config part of the vendor-data the metadata service serves:
 * `phone_home` (form-encoded POST at the end of the first boot) and a
 * `webhook` reporter (cloud-init reads `reporting:` from vendor-data too: its
 * merged configuration includes vendor-cloud-config.txt, and the
 * modules-final stage applies it), whose `finish` event of `modules-final`
 * carries SUCCESS, WARN or FAIL.
 */
export function floeVendorPart(base = `http://${METADATA_IPV4}`): string {
  const config = {
    phone_home: { url: `${base}${PHONE_HOME_PATH}`, post: ['instance_id', 'hostname'], tries: 3 },
    reporting: { floe: { type: 'webhook', endpoint: `${base}${REPORT_PATH}`, timeout: 5, retries: 2 } },
  };
  return `#cloud-config\n${cloudYaml(config)}`;
}

// cloud-init guesses the type of a text/plain part from its first line (#cloud-config, #!, #include, ...).
function part(type: string, filename: string, body: string): string {
  return [
    `Content-Type: ${type}; charset="utf-8"`,
    'MIME-Version: 1.0',
    'Content-Transfer-Encoding: 8bit',
    `Content-Disposition: attachment; filename="${filename}"`,
    '',
    body,
  ].join('\n');
}

/**
 * The vendor-data of a VM as one MIME multipart document (cloud-init runs
 * every part, vendor-data being processed like user-data): floe's part, then
 * the operator's or instance's own vendor-data, when given, as a text/plain
 * part whose type cloud-init recognizes by its first line. The boundary is
 * derived from the content, so the document is the same on every request.
 *
 * @example
 * vendorData('#cloud-config\npackages: [htop]\n')
 */
export function vendorData(own: string | null = null, base?: string): string {
  const parts = [part('text/cloud-config', 'floe.cfg', floeVendorPart(base))];
  if (own !== null && own.length > 0) parts.push(part('text/plain', 'vendor-data', own));
  const boundary = `floe-${createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 24)}`;
  const lines = [`Content-Type: multipart/mixed; boundary="${boundary}"`, 'MIME-Version: 1.0', ''];
  for (const p of parts) lines.push(`--${boundary}`, p.endsWith('\n') ? p.slice(0, -1) : p);
  lines.push(`--${boundary}--`, '');
  return lines.join('\n');
}

/**
 * The vendor-data of a VM's seed disk when the metadata service runs on its
 * host: a VM with NICs reaches the service, so it gets floe's part too and
 * reports the end of its first boot like a VM without a seed disk; a VM
 * without NICs gets only its own (or the operator's) vendor-data.
 */
export function seedVendorData(vm: DesiredInstance): string | null {
  const own = vm.vendor_data ?? null;
  return (vm.nics ?? []).length > 0 ? vendorData(own) : own;
}
