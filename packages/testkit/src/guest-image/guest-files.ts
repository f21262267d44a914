/**
 * The text files inside floe's test guest: its /init, busybox init's table,
 * the DHCP and power-button hooks, and the boot loader configuration. Pure, so
 * the image's cache key can hash them and tests can read them.
 *
 * What the guest does at boot, in order: mount /proc, /sys, /dev; load the
 * modules; find the NoCloud seed as cloud-init does (every block device is
 * probed for an ISO 9660 or FAT file system labelled `cidata`, see
 * SEED_FUNCTIONS) and mount it read-only; set the hostname from
 * `local-hostname`; bring every ethN up with DHCP (waits a few seconds for
 * the leases, then keeps trying in the background) and keep watching for
 * NICs plugged in or pulled out later (see NETWORK_FUNCTIONS); start acpid,
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
/**
 * Printed on the serial console when a NIC appears or goes:
 * `FLOE-TEST LINK eth1 52:54:00:12:34:56 up`, `FLOE-TEST LINK eth1 gone`.
 */
export const LINK_MARKER = 'FLOE-TEST LINK';
/** The hostname when no seed names one. */
export const DEFAULT_GUEST_HOSTNAME = 'floe-test';

/**
 * Modules the guest loads, all from Debian's cloud kernel, which is what
 * distribution cloud images boot: virtio (PCI, block, SCSI, net, rng), the
 * disk and CD-ROM drivers that kernel has (PIIX IDE, SCSI disk and CD; it has
 * no AHCI, so a CD-ROM on q35's own SATA controller stays invisible, as it
 * does to a real cloud image), the seed's file systems, the ACPI power button
 * with the event device acpid reads, and pvpanic (so a host can see a guest
 * kernel panic as a QMP GUEST_PANICKED event).
 */
export const GUEST_MODULES = [
  'virtio_pci',
  'virtio_blk',
  'virtio_scsi',
  'virtio_net',
  'virtio_rng',
  'ata_piix',
  'sr_mod',
  'sd_mod',
  'isofs',
  'vfat',
  'nls_cp437',
  'nls_utf8',
  'button',
  'evdev',
  'pvpanic_mmio',
  'pvpanic_pci',
] as const;

/**
 * How the guest finds and mounts its NoCloud seed, as shell functions for
 * /init, the way cloud-init's NoCloud data source does: `seed_find` prints
 * the first block device, whatever its bus or name, whose file system is
 * labelled `cidata` (or `CIDATA`); busybox's findfs probes every block device
 * in /dev for it, as `blkid -t LABEL=cidata` does for cloud-init (the static
 * busybox has no blkid applet). `seed_mount` mounts it read-only on
 * /mnt/seed, as ISO 9660 or FAT only, the two types cloud-init accepts.
 */
export const SEED_FUNCTIONS = `seed_find() {
  findfs LABEL=cidata 2>/dev/null || findfs LABEL=CIDATA 2>/dev/null
}

seed_mount() {
  mount -t iso9660 -o ro "$1" /mnt/seed 2>/dev/null || mount -t vfat -o ro "$1" /mnt/seed 2>/dev/null
}
`;

/**
 * busybox applets the guest's scripts call that a busybox build may lack (the
 * static one has findfs but no blkid, for one); the build checks them.
 */
export const GUEST_APPLETS = [
  'findfs',
  'mount',
  'umount',
  'modprobe',
  'ip',
  'udhcpc',
  'acpid',
  'init',
  'poweroff',
  'hostname',
  'sed',
  'grep',
  'head',
  'tr',
] as const;

/** The kernel command line of the test guest: everything on the first serial port. */
export const GUEST_KERNEL_CMDLINE = 'console=ttyS0,115200 quiet';

/**
 * The guest's network handling, as shell functions for /init. `net_sweep`
 * looks at every `eth*` in `$NET_SYS` (default /sys/class/net): a NIC it has
 * not seen (by name and ifindex, so a new NIC that takes a pulled one's name
 * counts as new) is brought up (so IPv6 SLAAC configures it) and gets a
 * udhcpc that keeps asking until a lease comes and then renews it; a NIC that
 * went has its udhcpc stopped. It prints LINK_MARKER lines for both, and an
 * IP_MARKER line for each new global (or site-local) IPv6 address once it
 * passed duplicate address detection (the udhcpc hook prints the
 * IPv4 ones). `net_leased` is true once every NIC seen has an IPv4 lease.
 * State lives in `$NET_RUN` (default /run/floe). `$name` is the hostname sent
 * with DHCP.
 */
export const NETWORK_FUNCTIONS = `# Once the console shell runs, its prompt ends the line: start markers on a line of their own.
net_say() {
  if [ -e "\${NET_RUN:-/run/floe}/ready" ]; then printf '\\n%s\\n' "$*"; else printf '%s\\n' "$*"; fi
}

net_start() {
  n=$1
  ip link set "$n" up
  # In the foreground of a background job: keeps asking every few seconds until a lease comes, then renews it.
  udhcpc -f -i "$n" -s /etc/udhcpc/default.script -x "hostname:$name" -t 3 -T 1 -A 2 -p "\${NET_RUN:-/run/floe}/udhcpc.$n.pid" </dev/null >"\${NET_RUN:-/run/floe}/udhcpc.$n.log" 2>&1 &
  echo "$(cat "\${NET_SYS:-/sys/class/net}/$n/ifindex") $!" >"\${NET_RUN:-/run/floe}/nic.$n"
  net_say "${LINK_MARKER} $n $(cat "\${NET_SYS:-/sys/class/net}/$n/address") up"
}

net_stop() {
  n=$1
  read -r _ pid <"\${NET_RUN:-/run/floe}/nic.$n" && kill "$pid" 2>/dev/null
  rm -f "\${NET_RUN:-/run/floe}/nic.$n" "\${NET_RUN:-/run/floe}/lease.$n" "\${NET_RUN:-/run/floe}/ipv6.$n"
  net_say "${LINK_MARKER} $n gone"
}

net_sweep() {
  for f in "\${NET_RUN:-/run/floe}"/nic.*; do
    [ -e "$f" ] || continue
    n=\${f##*/nic.}
    read -r seen _ <"$f"
    [ "$(cat "\${NET_SYS:-/sys/class/net}/$n/ifindex" 2>/dev/null)" = "$seen" ] || net_stop "$n"
  done
  for d in "\${NET_SYS:-/sys/class/net}"/eth*; do
    [ -e "$d/ifindex" ] || continue
    n=\${d##*/}
    [ -e "\${NET_RUN:-/run/floe}/nic.$n" ] || net_start "$n"
    for a in $(ip -6 addr show dev "$n" 2>/dev/null | sed -n '/tentative/d; s/^ *inet6 \\([0-9a-f:]*\\/[0-9]*\\) scope \\(global\\|site\\) .*/\\1/p'); do
      grep -qx "$a" "\${NET_RUN:-/run/floe}/ipv6.$n" 2>/dev/null && continue
      echo "$a" >>"\${NET_RUN:-/run/floe}/ipv6.$n"
      net_say "${IP_MARKER} $n $a"
    done
  done
}

net_leased() {
  for f in "\${NET_RUN:-/run/floe}"/nic.*; do
    [ -e "$f" ] || continue
    [ -e "\${NET_RUN:-/run/floe}/lease.\${f##*/nic.}" ] || return 1
  done
  return 0
}
`;

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

# The NoCloud seed: any block device with a file system labelled cidata.
# Devices may appear a little after their driver loads, so look for a while.
${SEED_FUNCTIONS}
seed=
i=0
while [ "$i" -lt 100 ]; do
  seed=$(seed_find)
  [ -n "$seed" ] && break
  i=$((i + 1))
  sleep 0.1
done

name=${DEFAULT_GUEST_HOSTNAME}
if [ -n "$seed" ] && seed_mount "$seed"; then
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
${NETWORK_FUNCTIONS}
# DHCP (and, with the links up, SLAAC) on every NIC there is now; wait a few
# seconds for the leases, then keep watching for NICs plugged in or pulled out.
net_sweep
i=0
while [ "$i" -lt 50 ] && ! net_leased; do
  i=$((i + 1))
  sleep 0.1
done
(while :; do sleep 1; net_sweep; done) </dev/null >/dev/console 2>&1 &

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
    rm -f "/run/floe/lease.$interface"
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
    # After boot the console shell's prompt ends the line: start on a new one.
    nl=; [ -e /run/floe/ready ] && nl='\\n'
    printf "$nl%s\\n" "${IP_MARKER} $interface $ip/\${mask:-24}" >/dev/console
    touch "/run/floe/lease.$interface"
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
