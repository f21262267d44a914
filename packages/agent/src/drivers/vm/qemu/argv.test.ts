import { describe, expect, it } from 'vitest';
import { FloeError } from '@floe/api';
import { NOCLOUD_NET_SERIAL, nicQmpArgs, qemuArgv, type QemuSpec } from './argv.js';

const dir = '/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3';

function spec(overrides: Partial<QemuSpec> = {}, paths: Partial<QemuSpec['paths']> = {}): QemuSpec {
  return {
    id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    name: 'web-1',
    vcpus: 2,
    memoryMib: 512,
    accelerator: 'tcg',
    diskCache: 'none',
    ...overrides,
    paths: {
      pidfile: `${dir}/qemu.pid`,
      qmpSocket: `${dir}/qmp.sock`,
      serialSocket: `${dir}/serial.sock`,
      vncSocket: `${dir}/vnc.sock`,
      consoleLog: `${dir}/console.log`,
      disk: `${dir}/disk.qcow2`,
      seedIso: `${dir}/seed.iso`,
      ...paths,
    },
  };
}

function expectInvalid(fn: () => unknown, field: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FloeError);
    expect((err as FloeError).code).toBe('validation_failed');
    expect((err as FloeError).details?.field).toBe(field);
    return;
  }
  throw new Error(`expected a validation error for ${field}`);
}

describe('qemuArgv', () => {
  it('builds the TCG command line', () => {
    expect(qemuArgv(spec())).toEqual([
      '-name',
      'guest=web-1',
      '-machine',
      'q35,accel=tcg,graphics=off',
      '-cpu',
      'max',
      '-smp',
      '2',
      '-m',
      '512M',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-vnc',
      'unix:/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/vnc.sock',
      '-daemonize',
      '-pidfile',
      '/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/qemu.pid',
      '-qmp',
      'unix:/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/qmp.sock,server=on,wait=off',
      '-chardev',
      'socket,id=serial0,path=/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/serial.sock,server=on,wait=off,logfile=/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/console.log,logappend=on',
      '-serial',
      'chardev:serial0',
      '-object',
      'rng-random,id=rng0,filename=/dev/urandom',
      '-device',
      'virtio-rng-pci,rng=rng0',
      '-drive',
      'if=none,id=disk0,file=/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/disk.qcow2,format=qcow2,cache=none,discard=unmap',
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=0',
      '-device',
      'pcie-root-port,id=nicport0,chassis=1,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport1,chassis=2,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport2,chassis=3,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport3,chassis=4,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport4,chassis=5,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport5,chassis=6,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport6,chassis=7,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport7,chassis=8,slot=0,io-reserve=0',
      '-drive',
      'if=none,id=seed,file=/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/seed.iso,format=raw,readonly=on',
      '-device',
      'virtio-blk-pci,drive=seed,serial=cidata',
      '-device',
      'VGA,id=video0',
    ]);
  });

  it('uses the host CPU under KVM, writeback caching, and no seed disk without a seed', () => {
    expect(
      qemuArgv(spec({ accelerator: 'kvm', diskCache: 'writeback', vcpus: 1, memoryMib: 128 }, { seedIso: null })),
    ).toEqual([
      '-name',
      'guest=web-1',
      '-machine',
      'q35,accel=kvm,graphics=off',
      '-cpu',
      'host',
      '-smp',
      '1',
      '-m',
      '128M',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-vnc',
      'unix:/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/vnc.sock',
      '-daemonize',
      '-pidfile',
      '/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/qemu.pid',
      '-qmp',
      'unix:/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/qmp.sock,server=on,wait=off',
      '-chardev',
      'socket,id=serial0,path=/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/serial.sock,server=on,wait=off,logfile=/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/console.log,logappend=on',
      '-serial',
      'chardev:serial0',
      '-object',
      'rng-random,id=rng0,filename=/dev/urandom',
      '-device',
      'virtio-rng-pci,rng=rng0',
      '-drive',
      'if=none,id=disk0,file=/var/lib/floe/agent/vms/inst_01JB8X0Q3E6M2T9K4V7W5YB1C3/disk.qcow2,format=qcow2,cache=writeback,discard=unmap',
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=0',
      '-device',
      'pcie-root-port,id=nicport0,chassis=1,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport1,chassis=2,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport2,chassis=3,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport3,chassis=4,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport4,chassis=5,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport5,chassis=6,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport6,chassis=7,slot=0,io-reserve=0',
      '-device',
      'pcie-root-port,id=nicport7,chassis=8,slot=0,io-reserve=0',
      '-device',
      'VGA,id=video0',
    ]);
  });

  it('puts the seed on virtio, the one bus every cloud kernel has, read-only and never booted', () => {
    const argv = qemuArgv(spec());
    // Every -drive/-device value that mentions the seed drive.
    const seedArgs = argv.filter(
      (a, i) => i > 0 && (argv[i - 1] === '-drive' || argv[i - 1] === '-device') && /(^|,)(id|drive)=seed(,|$)/.test(a),
    );
    expect(seedArgs).toHaveLength(2);
    const [drive, device] = seedArgs as [string, string];
    expect(drive.split(',')).toEqual(expect.arrayContaining(['if=none', 'id=seed', 'format=raw', 'readonly=on']));
    expect(drive).not.toMatch(/media=cdrom/);
    // Cloud kernels have no AHCI (q35's CD-ROM controller) and no IDE/SATA/SCSI CD on q35: only virtio-blk-pci will do.
    expect(device.split(',')[0]).toBe('virtio-blk-pci');
    expect(device).not.toMatch(/ide|ahci|sata|scsi|usb|bootindex/);
    expect(argv.join(' ')).not.toMatch(/ide-cd|ide-hd|ahci|scsi-cd|usb-storage/);
  });

  it('refuses ids and names that could smuggle options or paths', () => {
    expectInvalid(() => qemuArgv(spec({ id: '../inst_01JB8X0Q3E6M2T9K4V7W5YB1C3' })), 'id');
    expectInvalid(() => qemuArgv(spec({ id: 'inst_01jb8x0q3e6m2t9k4v7w5yb1c3' })), 'id');
    expectInvalid(() => qemuArgv(spec({ name: 'web,debug-threads=on' })), 'name');
    expectInvalid(() => qemuArgv(spec({ name: 'Web' })), 'name');
    expectInvalid(() => qemuArgv(spec({ name: '' })), 'name');
  });

  it('refuses paths with commas, control characters, or relative paths', () => {
    expectInvalid(() => qemuArgv(spec({}, { disk: '/srv/vm,file=/etc/shadow/disk.qcow2' })), 'disk');
    expectInvalid(() => qemuArgv(spec({}, { seedIso: '/srv/a,b/seed.iso' })), 'seed_iso');
    expectInvalid(() => qemuArgv(spec({}, { consoleLog: '/srv/log\nx' })), 'console_log');
    expectInvalid(() => qemuArgv(spec({}, { pidfile: 'relative/qemu.pid' })), 'pidfile');
    expectInvalid(() => qemuArgv(spec({}, { qmpSocket: '/srv/x,server=off' })), 'qmp_socket');
  });

  it('refuses socket paths longer than a unix socket allows', () => {
    const long = `/${'d'.repeat(100)}/serial.sock`;
    expectInvalid(() => qemuArgv(spec({}, { serialSocket: long })), 'serial_socket');
    expectInvalid(() => qemuArgv(spec({}, { vncSocket: long })), 'vnc_socket');
    expectInvalid(() => qemuArgv(spec({}, { vncSocket: '/srv/vnc.sock,password=on' })), 'vnc_socket');
  });

  it('serves the graphical console on the unix socket only, and adds the VGA card after every other device', () => {
    const argv = qemuArgv(
      spec({ nics: [{ id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C4', tap: 'fltp0', mac: '52:54:00:12:34:56' }] }),
    );
    expect(argv.filter((a, i) => argv[i - 1] === '-vnc')).toEqual([`unix:${dir}/vnc.sock`]);
    // No TCP listener: nothing that looks like host:display or a websocket port.
    expect(argv.join(' ')).not.toMatch(/-vnc [^u]|websocket|to=/);
    expect(argv.slice(-2)).toEqual(['-device', 'VGA,id=video0']);
    expect(argv.filter((a) => a.startsWith('VGA'))).toHaveLength(1);
  });

  it('refuses impossible sizes and unknown modes', () => {
    expectInvalid(() => qemuArgv(spec({ vcpus: 0 })), 'vcpus');
    expectInvalid(() => qemuArgv(spec({ vcpus: 1.5 })), 'vcpus');
    expectInvalid(() => qemuArgv(spec({ memoryMib: 8 })), 'memory_mib');
    expectInvalid(() => qemuArgv(spec({ accelerator: 'hvf' as 'kvm' })), 'accelerator');
    expectInvalid(() => qemuArgv(spec({ diskCache: 'unsafe' as 'none' })), 'disk_cache');
  });
});

describe('qemuArgv with NICs', () => {
  const nics = [
    { id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C4', tap: 'fltp2b9227216a2', mac: '52:54:00:12:34:56', index: 0 },
    { id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C6', tap: 'fltp0123456789a', mac: '52:54:00:ab:cd:ef', index: 5 },
  ];

  it("adds a tap netdev and a virtio-net-pci device per NIC on its slot's root port, after the ports and before the seed", () => {
    const argv = qemuArgv(spec({ nics }));
    const base = qemuArgv(spec());
    const at = base.indexOf('-drive', base.indexOf('pcie-root-port,id=nicport7,chassis=8,slot=0,io-reserve=0'));
    expect(argv.slice(at, at + 8)).toEqual([
      '-netdev',
      'tap,id=nd-nic_01JB8X0Q3E6M2T9K4V7W5YB1C4,ifname=fltp2b9227216a2,script=no,downscript=no,vhost=off',
      '-device',
      'virtio-net-pci,netdev=nd-nic_01JB8X0Q3E6M2T9K4V7W5YB1C4,id=nic_01JB8X0Q3E6M2T9K4V7W5YB1C4,mac=52:54:00:12:34:56,bus=nicport0',
      '-netdev',
      'tap,id=nd-nic_01JB8X0Q3E6M2T9K4V7W5YB1C6,ifname=fltp0123456789a,script=no,downscript=no,vhost=off',
      '-device',
      'virtio-net-pci,netdev=nd-nic_01JB8X0Q3E6M2T9K4V7W5YB1C6,id=nic_01JB8X0Q3E6M2T9K4V7W5YB1C6,mac=52:54:00:ab:cd:ef,bus=nicport5',
    ]);
    expect(argv.length).toBe(base.length + 8);
    expect(qemuArgv(spec({ nics: [] }))).toEqual(base);
  });

  it('puts NICs recorded without a slot on the port of their position', () => {
    const argv = qemuArgv(spec({ nics: nics.map(({ index: _, ...nic }) => nic) }));
    expect(argv.filter((a) => a.startsWith('virtio-net-pci')).map((a) => a.split(',').at(-1))).toEqual([
      'bus=nicport0',
      'bus=nicport1',
    ]);
  });

  it('builds the same NIC for QMP hot-plug', () => {
    expect(nicQmpArgs(nics[1]!, 1)).toEqual({
      netdev: {
        type: 'tap',
        id: 'nd-nic_01JB8X0Q3E6M2T9K4V7W5YB1C6',
        ifname: 'fltp0123456789a',
        script: 'no',
        downscript: 'no',
        vhost: false,
      },
      device: {
        driver: 'virtio-net-pci',
        netdev: 'nd-nic_01JB8X0Q3E6M2T9K4V7W5YB1C6',
        id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C6',
        mac: '52:54:00:ab:cd:ef',
        bus: 'nicport5',
      },
    });
    expectInvalid(() => nicQmpArgs({ ...nics[0]!, index: 8 }, 0), 'nics[0].index');
    expectInvalid(() => nicQmpArgs({ ...nics[0]!, tap: 'a b' }, 0), 'nics[0].tap');
  });

  it('rejects NIC values that could break QEMU option syntax', () => {
    expectInvalid(() => qemuArgv(spec({ nics: [{ ...nics[0]!, tap: 'tap0,script=/x' }] })), 'nics[0].tap');
    expectInvalid(() => qemuArgv(spec({ nics: [{ ...nics[0]!, tap: 'fltp0123456789ab' }] })), 'nics[0].tap');
    expectInvalid(() => qemuArgv(spec({ nics: [nics[0]!, { ...nics[1]!, mac: '53:54:00:ab:cd:ef' }] })), 'nics[1].mac');
    expectInvalid(() => qemuArgv(spec({ nics: [{ ...nics[0]!, mac: '52:54:00:AB:CD:EF' }] })), 'nics[0].mac');
    expectInvalid(() => qemuArgv(spec({ nics: [{ ...nics[0]!, id: 'nic_x,y' }] })), 'nics[0].id');
    expectInvalid(
      () => qemuArgv(spec({ nics: Array.from({ length: 9 }, (_, i) => ({ ...nics[0]!, index: i })) })),
      'nics',
    );
  });

  it('rejects slots out of range and two NICs in one slot or with one id', () => {
    expectInvalid(() => qemuArgv(spec({ nics: [{ ...nics[0]!, index: 8 }] })), 'nics[0].index');
    expectInvalid(() => qemuArgv(spec({ nics: [{ ...nics[0]!, index: -1 }] })), 'nics[0].index');
    expectInvalid(() => qemuArgv(spec({ nics: [nics[0]!, { ...nics[1]!, index: 0 }] })), 'nics[1].index');
    expectInvalid(() => qemuArgv(spec({ nics: [nics[0]!, { ...nics[1]!, id: nics[0]!.id }] })), 'nics[1].id');
  });
});

describe('qemuArgv without a seed disk', () => {
  it("names the metadata service in the SMBIOS serial, as cloud-init's NoCloudNet reads it", () => {
    const argv = qemuArgv(spec({ smbiosSerial: NOCLOUD_NET_SERIAL }, { seedIso: null }));
    expect(argv.slice(argv.indexOf('-smbios'))).toEqual([
      '-smbios',
      'type=1,serial=ds=nocloud-net;s=http://169.254.169.254/',
      '-device',
      'VGA,id=video0',
    ]);
    expect(argv.join(' ')).not.toContain('media=cdrom');
    expect(qemuArgv(spec())).not.toContain('-smbios');
  });

  it('refuses a serial that would break the option syntax', () => {
    for (const bad of ['ds=nocloud,s=x', 'a b', '', 'x\n'])
      expectInvalid(() => qemuArgv(spec({ smbiosSerial: bad })), 'smbios_serial');
  });
});
