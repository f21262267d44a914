/**
 * The text files inside floe's test guest: its /init, busybox init's table,
 * the DHCP and power-button hooks, and the boot loader configuration. Pure, so
 * the image's cache key can hash them and tests can read them.
 *
 * What the guest does at boot, in order: mount /proc, /sys, /dev; load the
 * modules; find the NoCloud seed (a device labelled `cidata`, ISO 9660 or
 * FAT, on a CD-ROM or a disk) and mount it read-only; set the hostname from
 * `local-hostname`; bring eth0 up with DHCP when there is one (waits a few
 * seconds for a lease, then keeps trying in the background); start acpid,
 * which powers off on the ACPI power button; hand PID 1 to busybox init. Its
 * first job runs user-data when it is a `#!` script (output on the console;
 * `poweroff` and `reboot` work there) and prints `FLOE-TEST READY <hostname>`;
 * then init keeps a shell on ttyS0.
 *
 * A user-data script runs to its end before READY: put long-running work in
 * the background.
 */

/** Printed on the serial console once the guest has booted and run its user-data. */
export const READY_MARKER = 'FLOE-TEST READY';
/** Printed on the serial console for every DHCP lease: `FLOE-TEST IP eth0 10.0.2.15/24`. */
export const IP_MARKER = 'FLOE-TEST IP';
/** The hostname when no seed names one. */
export const DEFAULT_GUEST_HOSTNAME = 'floe-test';

/**
 * Modules the guest loads: virtio (PCI, block, SCSI, net), SATA/IDE and
 * CD-ROM (a seed attached as an AHCI or IDE CD), the seed's file systems, the
 * ACPI power button with the event device acpid reads, and pvpanic (so a
 * host can see a guest kernel panic as a QMP GUEST_PANICKED event).
 */
export const GUEST_MODULES = [
  'virtio_pci', 'virtio_blk', 'virtio_scsi', 'virtio_net',
  'ahci', 'ata_piix', 'sr_mod', 'sd_mod',
  'isofs', 'vfat', 'nls_cp437', 'nls_utf8',
  'button', 'evdev', 'pvpanic_mmio', 'pvpanic_pci',
] as const;

/** The kernel command line of the test guest: everything on the first serial port. */
export const GUEST_KERNEL_CMDLINE = 'console=ttyS0,115200 quiet';

/** The guest's /init: prepares the machine (see above), then becomes busybox init. */
export function initScript(modules: readonly string[]): string {
  for (const m of modules) if (!/^[a-z0-9_]+$/.test(m)) throw new RangeError(`bad module name: ${m}`);
  return `#!/bin/sh
# floe test guest: prepare the machine, then hand PID 1 to busybox init.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
/bin/busybox --install -s
mount -t devtmpfs -o nosuid devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/floe

say() { echo "floe-test: $*"; }

for m in ${modules.join(' ')}; do
  modprobe -q "$m" || say "cannot load module $m"
done

# The NoCloud seed: a device labelled cidata. Devices may appear a little
# after their driver loads, so look for a while.
seed=
i=0
while [ "$i" -lt 100 ]; do
  seed=$(findfs LABEL=cidata 2>/dev/null) || seed=$(findfs LABEL=CIDATA 2>/dev/null) || seed=
  [ -n "$seed" ] && break
  i=$((i + 1))
  sleep 0.1
done

name=${DEFAULT_GUEST_HOSTNAME}
if [ -n "$seed" ] && mount -o ro "$seed" /mnt/seed; then
  say "NoCloud seed on $seed"
  h=$(sed -n 's/^local-hostname:[[:space:]]*//p' /mnt/seed/meta-data 2>/dev/null | head -n 1 | tr -d "\\"' \\t\\r")
  case "$h" in
    '') ;;
    *[!A-Za-z0-9.-]*) say "ignoring local-hostname $h" ;;
    *) name=$h ;;
  esac
else
  say "no NoCloud seed (a device labelled cidata) found"
fi
hostname "$name"
echo "$name" >/etc/hostname
echo "127.0.1.1 $name" >>/etc/hosts

ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  udhcpc -i eth0 -s /etc/udhcpc/default.script -x "hostname:$name" -t 5 -T 1 -b -p /run/udhcpc.eth0.pid
fi

acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid || say "cannot start acpid"

exec /bin/busybox init
`;
}

/**
 * busybox init's first job, run beside init rather than before it, so that
 * the power button, `poweroff` and `reboot` work while user-data runs.
 */
export const FIRSTBOOT_SCRIPT = `#!/bin/sh
if [ -f /mnt/seed/user-data ] && [ "$(head -c 2 /mnt/seed/user-data)" = '#!' ]; then
  cp /mnt/seed/user-data /run/floe/user-data
  chmod 0755 /run/floe/user-data
  echo "floe-test: running user-data"
  (cd /root && HOME=/root /run/floe/user-data </dev/null)
  echo "floe-test: user-data exited with $?"
fi
echo "${READY_MARKER} $(hostname)"
touch /run/floe/ready
`;

/** The serial console's shell, started once first boot is done so that its prompt never splits a marker line. */
export const CONSOLE_SCRIPT = `#!/bin/sh
while [ ! -e /run/floe/ready ]; do sleep 0.2; done
exec /bin/sh -l
`;

/** busybox init's table: first boot, a shell on the serial console, a clean shutdown. */
export const INITTAB = `::once:/etc/floe-firstboot
ttyS0::respawn:/etc/floe-console
::ctrlaltdel:/sbin/poweroff
::shutdown:/etc/floe-shutdown
`;

/** Run by busybox init on poweroff and reboot. */
export const SHUTDOWN_SCRIPT = `#!/bin/sh
echo "floe-test: shutting down"
umount -a -r 2>/dev/null
sync
`;

/** busybox acpid runs /etc/acpi/PWRF/00000080 for the ACPI power button. */
export const POWER_BUTTON_SCRIPT = `#!/bin/sh
echo "floe-test: power button pressed" >/dev/console
exec /sbin/poweroff
`;

/** udhcpc's hook: configure the lease with ip(8) and announce it on the console. */
export const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/\${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
      ip -4 route replace default via "\${router%% *}" dev "$interface"
    fi
    : >/etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
    [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
    echo "${IP_MARKER} $interface $ip/\${mask:-24}" >/dev/console
    ;;
esac
exit 0
`;

/** Small files of /etc. */
export const ETC_FILES: Readonly<Record<string, string>> = {
  passwd: 'root:x:0:0:root:/root:/bin/sh\n',
  group: 'root:x:0:\n',
  hosts: '127.0.0.1 localhost\n::1 localhost\n',
  profile: "export PATH=/sbin:/bin:/usr/sbin:/usr/bin\nexport PS1='\\h:\\w\\$ '\n",
};

/** syslinux's configuration: no menu, no wait, talk on the first serial port. */
export function syslinuxConfig(cmdline: string): string {
  if (/[\r\n]/.test(cmdline)) throw new RangeError('kernel command line must be one line');
  return `SERIAL 0 115200
DEFAULT floe
PROMPT 0
TIMEOUT 0
LABEL floe
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND ${cmdline}
`;
}
