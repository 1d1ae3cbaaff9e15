#!/bin/bash
# Boots a real systemd as PID 1 of the namespaces it is started in, over
# the machine's own root, for test/install_test.go:
#
#   unshare --fork --pid --mount --mount-proc --cgroup --kill-child \
#       bash systemd-boot.sh PKGROOT ETCDIR
#
# PKGROOT is a `make install DESTDIR=` tree (PREFIX=/usr): its usr/ is laid
# over /usr, so the installed units, binary and rebind.so are where a
# package would put them. ETCDIR is laid over /etc (the units' config).
# Everything systemd or the service writes lands on private tmpfs mounts
# (/run, /var, /tmp, /dev), so nothing of it reaches the machine; the
# network is the machine's, so the test connects to the socket unit's port.
# systemd starts only wstest.target (nothing), then what systemctl asks for.
set -euo pipefail
pkgroot=$1 etcdir=$2

mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$pkgroot/usr:/usr" /usr
mount -t overlay overlay -o "lowerdir=$etcdir:/etc" /etc

mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/systemd/system /run/lock
cat >/run/systemd/system/wstest.target <<'EOF'
[Unit]
Description=websockify install test (starts nothing)
EOF
# The units and the journal need only the targets' names: everything the
# early-boot targets pull in (udev, sysctl, clock, module loading, fstab
# mounts, the machine's enabled sockets and timers) is masked, since it
# would act on the machine, which this systemd does not own.
for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
	for target in sysinit basic sockets timers paths local-fs swap; do
		for dep in "$dir/$target.target.wants"/* "$dir/$target.target.requires"/*; do
			[ -e "$dep" ] || [ -L "$dep" ] || continue
			case ${dep##*/} in systemd-journald*) continue ;; esac
			: >"/run/systemd/system/${dep##*/}" # an empty unit file is masked
		done
	done
done
for unit in local-fs.target local-fs-pre.target swap.target cryptsetup.target veritysetup.target \
	integritysetup.target remote-fs.target timers.target paths.target; do
	: >"/run/systemd/system/$unit"
done
mount -t tmpfs -o mode=755 tmpfs /var
mkdir -p /var/tmp /var/lib /var/log /var/cache
chmod 1777 /var/tmp
ln -s /run /var/run
ln -s /run/lock /var/lock
mount -t tmpfs -o mode=1777 tmpfs /tmp

# A /dev of its own, as a container manager makes one.
mount -t tmpfs -o mode=755 tmpfs /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/tty c 5 0
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr

# The unified cgroup hierarchy, rooted at this cgroup namespace.
umount -R /sys/fs/cgroup 2>/dev/null || umount -l /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup

# $container tells systemd it runs in a container: it takes its options
# from the command line and skips what only a machine's init does.
export container=websockify-test
exec /lib/systemd/systemd --unit=wstest.target --log-target=console --show-status=no </dev/null
