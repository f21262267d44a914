import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpioNewc } from './cpio.js';
import { aptListsStamp, parseAptShow } from './debian.js';
import {
  CONSOLE_SCRIPT,
  FIRSTBOOT_SCRIPT,
  GUEST_KERNEL_CMDLINE,
  GUEST_MODULES,
  INITTAB,
  NETWORK_FUNCTIONS,
  POWER_BUTTON_SCRIPT,
  SEED_FUNCTIONS,
  SHUTDOWN_SCRIPT,
  UDHCPC_SCRIPT,
  initScript,
  syslinuxConfig,
} from './guest-files.js';
import { buildMbr, chs } from './mbr.js';
import { modinfoDepends, moduleName, modulesDep, parseModinfo, resolveModules } from './modules.js';
import { partitionMib } from './disk.js';

describe('cpioNewc', () => {
  it('writes newc headers, 4-byte padding and the trailer', () => {
    const archive = cpioNewc([
      { type: 'dir', path: 'bin' },
      { type: 'file', path: 'bin/hi', data: 'hey\n', mode: 0o755 },
      { type: 'symlink', path: 'sh', target: 'bin/hi' },
      { type: 'char', path: 'console', major: 5, minor: 1 },
    ]);
    const expected =
      '070701' +
      '00000001' +
      '000041ed' +
      '00000000' +
      '00000000' +
      '00000002' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000004' +
      '00000000' +
      'bin\0' +
      '\0\0' +
      '070701' +
      '00000002' +
      '000081ed' +
      '00000000' +
      '00000000' +
      '00000001' +
      '00000000' +
      '00000004' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000007' +
      '00000000' +
      'bin/hi\0' +
      '\0\0\0' +
      'hey\n' +
      '070701' +
      '00000003' +
      '0000a1ff' +
      '00000000' +
      '00000000' +
      '00000001' +
      '00000000' +
      '00000006' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000003' +
      '00000000' +
      'sh\0' +
      '\0\0\0' +
      'bin/hi' +
      '\0\0' +
      '070701' +
      '00000004' +
      '00002180' +
      '00000000' +
      '00000000' +
      '00000001' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000005' +
      '00000001' +
      '00000008' +
      '00000000' +
      'console\0' +
      '\0\0' +
      '070701' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000001' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '00000000' +
      '0000000b' +
      '00000000' +
      'TRAILER!!!\0' +
      '\0\0\0';
    expect(archive.toString('latin1')).toBe(expected);
    expect(archive.length % 4).toBe(0);
  });

  it('refuses absolute, dotted, duplicate and empty paths', () => {
    for (const path of ['/init', 'a/../b', './x', 'a//b', '', 'TRAILER!!!']) {
      expect(() => cpioNewc([{ type: 'dir', path }])).toThrow(RangeError);
    }
    expect(() =>
      cpioNewc([
        { type: 'dir', path: 'a' },
        { type: 'dir', path: 'a' },
      ]),
    ).toThrow(/duplicate/);
  });
});

describe('buildMbr', () => {
  it('writes the boot code, signature, one bootable partition and 55 AA', () => {
    const code = Buffer.alloc(440, 0x90);
    const mbr = buildMbr(code, [{ start: 2048, sectors: 32768, type: 0x0e, bootable: true }], 0x666c6f65);
    expect(mbr.length).toBe(512);
    expect(mbr.subarray(0, 440).equals(code)).toBe(true);
    expect(mbr.subarray(440, 446).toString('hex')).toBe('656f6c660000');
    // status, CHS 0/32/33, type, CHS 2/42/40, LBA 2048, 32768 sectors
    expect(mbr.subarray(446, 462).toString('hex')).toBe('80202100' + '0e2a2802' + '00080000' + '00800000');
    expect(mbr.subarray(462, 510).every((b) => b === 0)).toBe(true);
    expect(mbr.subarray(510).toString('hex')).toBe('55aa');
  });

  it('is read back by file(1) as the partition it describes', async (ctx) => {
    if (spawnSync('file', ['--version']).error) {
      ctx.skip('file(1) is not installed');
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'floe-mbr-'));
    try {
      const disk = join(dir, 'disk.raw');
      await writeFile(
        disk,
        buildMbr(new Uint8Array(), [{ start: 2048, sectors: 32768, type: 0x0e, bootable: true }], 1),
      );
      // file(1) describes partitions only when the image reaches them.
      await truncate(disk, 2 * 1024 * 1024);
      const out = spawnSync('file', ['-b', disk], { encoding: 'utf8' }).stdout;
      expect(out).toContain('partition 1 : ID=0xe, active');
      expect(out).toContain('startsector 2048, 32768 sectors');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('saturates CHS past 1023 cylinders and refuses what does not fit', () => {
    expect(chs(0)).toEqual([0, 1, 0]);
    expect(chs(1024 * 255 * 63)).toEqual([0xfe, 0xff, 0xff]);
    expect(() => buildMbr(new Uint8Array(441), [], 0)).toThrow(RangeError);
    expect(() => buildMbr(new Uint8Array(), [{ start: 0, sectors: 1, type: 0x83 }], 0)).toThrow(RangeError);
    expect(() => buildMbr(new Uint8Array(), [{ start: 1, sectors: 2 ** 32, type: 0x83 }], 0)).toThrow(RangeError);
  });
});

/** A minimal ELF64 with a section-name table and a `.modinfo` section. */
function fakeModule(modinfo: string): Buffer {
  const shstrtab = Buffer.from('\0.shstrtab\0.modinfo\0', 'latin1');
  const info = Buffer.from(modinfo, 'utf8');
  const shoff = Math.ceil((64 + shstrtab.length + info.length) / 8) * 8;
  const elf = Buffer.alloc(shoff + 3 * 64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2;
  elf[5] = 1;
  elf[6] = 1;
  elf.writeBigUInt64LE(BigInt(shoff), 0x28);
  elf.writeUInt16LE(64, 0x3a);
  elf.writeUInt16LE(3, 0x3c);
  elf.writeUInt16LE(1, 0x3e);
  shstrtab.copy(elf, 64);
  info.copy(elf, 64 + shstrtab.length);
  const section = (i: number, name: number, offset: number, size: number): void => {
    elf.writeUInt32LE(name, shoff + i * 64);
    elf.writeBigUInt64LE(BigInt(offset), shoff + i * 64 + 0x18);
    elf.writeBigUInt64LE(BigInt(size), shoff + i * 64 + 0x20);
  };
  section(1, 1, 64, shstrtab.length);
  section(2, 11, 64 + shstrtab.length, info.length);
  return elf;
}

describe('kernel modules', () => {
  it('reads depends= from .modinfo', () => {
    const info = parseModinfo(
      fakeModule(
        'license=GPL\0depends=virtio_ring,virtio-pci-modern-dev,virtio\0alias=pci:v00001AF4d*\0name=virtio_pci\0',
      ),
    );
    expect(info.get('name')).toEqual(['virtio_pci']);
    expect(modinfoDepends(info)).toEqual(['virtio_ring', 'virtio_pci_modern_dev', 'virtio']);
    expect(modinfoDepends(parseModinfo(fakeModule('depends=\0name=virtio_ring\0')))).toEqual([]);
    expect(() =>
      parseModinfo(Buffer.from('not an elf file at all, not an elf file at all, not an elf file at all')),
    ).toThrow(/ELF/);
  });

  const tree: Record<string, string[]> = {
    virtio_ring: [],
    virtio: ['virtio_ring'],
    virtio_pci: ['virtio_ring', 'virtio'],
    virtio_blk: ['virtio', 'virtio_ring'],
    sr_mod: ['cdrom', 'scsi_mod'],
    scsi_mod: ['scsi_common'],
    scsi_common: [],
    cdrom: [],
    isofs: [],
  };
  const lookup = (name: string): { path: string; depends: string[] } | null =>
    name in tree ? { path: `kernel/x/${name}.ko`, depends: tree[name]! } : null;

  it('resolves dependencies first and skips built-in modules', () => {
    const mods = resolveModules(
      ['virtio-pci', 'virtio_blk', 'sr_mod', 'ext4'],
      lookup,
      new Set(['ext4', 'scsi_common']),
    );
    expect(mods.map((m) => m.name)).toEqual([
      'virtio_ring',
      'virtio',
      'virtio_pci',
      'virtio_blk',
      'cdrom',
      'scsi_mod',
      'sr_mod',
    ]);
    expect(mods.find((m) => m.name === 'scsi_mod')!.depends).toEqual([]);
    expect(() => resolveModules(['nope'], lookup, new Set())).toThrow(/nope not found/);
    expect(() =>
      resolveModules(['sr_mod'], (n) => (n === 'sr_mod' ? { path: 'a.ko', depends: ['missing'] } : null), new Set()),
    ).toThrow(/needed by sr_mod/);
  });

  it('writes modules.dep with every dependency listed before what it needs', () => {
    const mods = resolveModules(['virtio_pci', 'virtio_blk', 'sr_mod'], lookup, new Set());
    expect(modulesDep(mods)).toBe(
      'kernel/x/virtio_ring.ko:\n' +
        'kernel/x/virtio.ko: kernel/x/virtio_ring.ko\n' +
        'kernel/x/virtio_pci.ko: kernel/x/virtio.ko kernel/x/virtio_ring.ko\n' +
        'kernel/x/virtio_blk.ko: kernel/x/virtio.ko kernel/x/virtio_ring.ko\n' +
        'kernel/x/cdrom.ko:\n' +
        'kernel/x/scsi_common.ko:\n' +
        'kernel/x/scsi_mod.ko: kernel/x/scsi_common.ko\n' +
        'kernel/x/sr_mod.ko: kernel/x/scsi_mod.ko kernel/x/scsi_common.ko kernel/x/cdrom.ko\n',
    );
    expect(moduleName('nls-cp437.ko')).toBe('nls_cp437');
  });
});

describe('guest files', () => {
  it('are valid shell scripts', () => {
    for (const script of [
      initScript(GUEST_MODULES),
      `#!/bin/sh\n${NETWORK_FUNCTIONS}`,
      `#!/bin/sh\n${SEED_FUNCTIONS}`,
      FIRSTBOOT_SCRIPT,
      CONSOLE_SCRIPT,
      SHUTDOWN_SCRIPT,
      POWER_BUTTON_SCRIPT,
      UDHCPC_SCRIPT,
    ]) {
      expect(script.startsWith('#!/bin/sh\n')).toBe(true);
      const r = spawnSync('sh', ['-n'], { input: script, encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    }
  });

  it('print the ready marker, load the modules and hand over to busybox init', () => {
    const init = initScript(['virtio_pci', 'isofs']);
    expect(init).toContain('for m in virtio_pci isofs; do');
    expect(init.endsWith('\nexec /bin/busybox init\n')).toBe(true);
    expect(() => initScript(['virtio; reboot'])).toThrow(RangeError);
    expect(INITTAB.split('\n')[0]).toBe('::once:/etc/floe-firstboot');
    expect(INITTAB).toContain('::shutdown:/etc/floe-shutdown');
    expect(FIRSTBOOT_SCRIPT.endsWith('echo "FLOE-TEST READY $(hostname)"\ntouch /run/floe/ready\n')).toBe(true);
  });

  it('watch the NICs: DHCP on each new one, stop on the ones that went, IPv6 addresses announced once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'floe-guest-net-'));
    try {
      const sys = join(dir, 'sys');
      const runDir = join(dir, 'run');
      const bin = join(dir, 'bin');
      for (const d of [sys, runDir, bin]) await mkdir(d);
      const log = join(dir, 'calls.log');
      // Stand-ins for busybox's ip and udhcpc: they log what they were asked; udhcpc "gets" a lease and keeps running.
      await writeFile(
        join(bin, 'ip'),
        `#!/bin/sh\necho "ip $*" >>${log}\ncase "$*" in *"-6 addr show dev eth0"*) echo "    inet6 fd00::5/64 scope global dynamic"; echo "    inet6 fd00::9/64 scope global tentative"; echo "    inet6 fec0::7/64 scope site dynamic flags 100"; echo "    inet6 fe80::1/64 scope link";; esac\n`,
      );
      await writeFile(
        join(bin, 'udhcpc'),
        `#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -i ] && i=$2; shift; done\necho "udhcpc $i" >>${log}\ntouch "$NET_RUN/lease.$i"\nexec sleep 300\n`,
      );
      await chmod(join(bin, 'ip'), 0o755);
      await chmod(join(bin, 'udhcpc'), 0o755);
      const nic = (name: string, ifindex: number, mac: string) =>
        `mkdir -p $NET_SYS/${name}; echo ${ifindex} >$NET_SYS/${name}/ifindex; echo ${mac} >$NET_SYS/${name}/address`;
      const script = `${NETWORK_FUNCTIONS}
${nic('eth0', 2, '52:54:00:00:00:01')}
net_sweep
i=0; while [ $i -lt 50 ] && ! net_leased; do i=$((i + 1)); sleep 0.1; done
net_leased && echo leased
net_sweep
${nic('eth1', 3, '52:54:00:00:00:02')}
net_sweep
read -r _ first <$NET_RUN/nic.eth1
rm -r $NET_SYS/eth1
net_sweep
sleep 0.2
kill -0 $first 2>/dev/null && echo "udhcpc of the pulled eth1 still runs"
touch $NET_RUN/ready
${nic('eth1', 4, '52:54:00:00:00:03')}
net_sweep
for f in $NET_RUN/nic.*; do read -r _ pid <$f; kill $pid; done
`;
      const r = spawnSync('sh', ['-c', script], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, NET_SYS: sys, NET_RUN: runDir, name: 'vm-1' },
        timeout: 20_000,
      });
      expect(r.stderr).toBe('');
      expect(r.stdout.split('\n').filter((l) => l !== '')).toEqual([
        'FLOE-TEST LINK eth0 52:54:00:00:00:01 up',
        'FLOE-TEST IP eth0 fd00::5/64',
        'FLOE-TEST IP eth0 fec0::7/64',
        'leased',
        'FLOE-TEST LINK eth1 52:54:00:00:00:02 up',
        'FLOE-TEST LINK eth1 gone',
        'FLOE-TEST LINK eth1 52:54:00:00:00:03 up',
      ]);
      // Once the console shell runs, a marker starts on a line of its own.
      expect(r.stdout).toContain('gone\n\nFLOE-TEST LINK eth1 52:54:00:00:00:03 up\n');
      expect(r.stdout.startsWith('FLOE-TEST LINK eth0 52:54:00:00:00:01 up\n')).toBe(true);
      const calls = (await readFile(log, 'utf8')).split('\n');
      expect(calls).toContain('ip link set eth0 up');
      expect(calls).toContain('ip link set eth1 up');
      expect(calls.filter((c) => c.startsWith('udhcpc')).sort()).toEqual(['udhcpc eth0', 'udhcpc eth1', 'udhcpc eth1']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('find the seed as cloud-init does: any device labelled cidata (or CIDATA), mounted as ISO 9660 or FAT only', () => {
    // Stand-ins for busybox's findfs and mount: findfs knows the devices in $LABELS, mount (logging to fd 3) only takes the types in $FS.
    const run = (labels: string, fs: string, call: string) => {
      const stubs = `findfs() { for e in $LABELS; do [ "LABEL=\${e#*=}" = "$1" ] && { echo "\${e%%=*}"; return 0; }; done; return 1; }
mount() { echo "mount $*" >&3; case " $FS " in *" $2 "*) return 0 ;; esac; return 1; }`;
      const r = spawnSync('sh', ['-c', `exec 3>&2\n${stubs}\n${SEED_FUNCTIONS}\n${call}`], {
        encoding: 'utf8',
        timeout: 10_000,
        env: { ...process.env, LABELS: labels, FS: fs },
      });
      return { out: r.stdout, mounts: r.stderr.split('\n').filter((l) => l !== ''), status: r.status };
    };
    expect(run('/dev/vda1=root /dev/vdb=cidata', '', 'seed_find').out).toBe('/dev/vdb\n');
    expect(run('/dev/sr0=CIDATA', '', 'seed_find').out).toBe('/dev/sr0\n');
    expect(run('/dev/vdb=cidata /dev/sr0=CIDATA', '', 'seed_find').out).toBe('/dev/vdb\n');
    expect(run('/dev/vdb=config-2 /dev/vdc=cidata2', '', 'seed_find')).toMatchObject({ out: '', status: 1 });
    expect(run('', 'iso9660', 'seed_mount /dev/vdb')).toEqual({
      out: '',
      mounts: ['mount -t iso9660 -o ro /dev/vdb /mnt/seed'],
      status: 0,
    });
    expect(run('', 'vfat', 'seed_mount /dev/vdb')).toEqual({
      out: '',
      mounts: ['mount -t iso9660 -o ro /dev/vdb /mnt/seed', 'mount -t vfat -o ro /dev/vdb /mnt/seed'],
      status: 0,
    });
    expect(run('', 'ext4', 'seed_mount /dev/vdb').status).toBe(1);
  });

  it('boot syslinux without a prompt, on the serial console', () => {
    expect(syslinuxConfig(GUEST_KERNEL_CMDLINE)).toBe(
      'SERIAL 0 115200\nDEFAULT floe\nPROMPT 0\nTIMEOUT 0\nLABEL floe\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND console=ttyS0,115200 quiet\n',
    );
    expect(() => syslinuxConfig('a\nb')).toThrow(RangeError);
  });

  it('size the boot partition with room to spare', () => {
    expect(partitionMib(0)).toBe(16);
    expect(partitionMib(20 * 1024 * 1024)).toBe(24);
    expect(partitionMib(30 * 1024 * 1024)).toBe(35);
  });
});

describe('apt', () => {
  it('reads the candidate and its dependencies from apt-cache show', () => {
    const text =
      'Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2), foo | bar\nDescription: x\n\nPackage: other\nVersion: 1\n';
    expect(parseAptShow(text)).toEqual({
      package: 'linux-image-amd64',
      version: '6.1.192-2',
      depends: ['linux-image-6.1.0-56-amd64', 'foo'],
    });
    expect(parseAptShow('')).toBeNull();
  });

  it("fingerprints apt's lists by name, size and time", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'floe-apt-'));
    try {
      expect(await aptListsStamp(dir)).toBeNull();
      await writeFile(join(dir, 'lock'), '');
      await writeFile(join(dir, 'deb_Packages'), 'a');
      const first = await aptListsStamp(dir);
      expect(first).toMatch(/^[0-9a-f]{64}$/);
      expect(await aptListsStamp(dir)).toBe(first);
      await writeFile(join(dir, 'deb_Packages'), 'ab');
      expect(await aptListsStamp(dir)).not.toBe(first);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
