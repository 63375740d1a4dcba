# shellcheck shell=bash
# The appliance steps of scripts/build-image.sh (sourced): what goes onto the
# base root, what comes off it, the boot line, and the ext4 check.

# The packages of the image, one per line.
appliance_packages() {
    sed -e 's/#.*//' -e 's/[[:space:]]//g' "$REPO/image/packages.txt" | grep -v '^$'
}

# TEMPORARY (until the Ansible role lands): lays the agent and overlays/ onto
# ROOT and enables the units, the way the role will.
appliance_lay() {
    local root=$1 agent=$2
    install -D -m 0755 -o root -g root "$agent" "$root/usr/bin/homewarden"
    # Modes from git's executable bit only: a checkout's umask and owner must
    # not reach the image.
    (cd "$REPO/overlays" && find . -type d | sort | while read -r d; do
        install -d -m 0755 -o root -g root "$root/${d#./}"
    done
    find . -type f | sort | while read -r f; do
        mode=0644
        [ -x "$f" ] && mode=0755
        install -m "$mode" -o root -g root "$f" "$root/${f#./}"
    done)
    # The .env and the boot copy hold secrets: never readable by others.
    chmod 0700 "$root/etc/homewarden"
    local units=(systemd-networkd.service systemd-resolved.service ssh.service suricata.service
        homewarden-firewall.service homewarden.service)
    [ -f "$root/etc/systemd/system/homewarden-firstboot.service" ] && units+=(homewarden-firstboot.service)
    systemctl --root="$root" enable "${units[@]}" >/dev/null 2>&1
    # Nothing on the appliance fetches packages by itself.
    systemctl --root="$root" mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
    chroot "$root" /usr/bin/homewarden --config /etc/homewarden/homewarden.yaml check-config >/dev/null
}

# Removes what makes a root differ from build to build or from Pi to Pi.
appliance_cleanup() {
    local root=$1
    rm -f "$root"/etc/ssh/ssh_host_*
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed" \
        "$root/var/cache/ldconfig/aux-cache" "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache
    find "$root/var/log" -type f -delete
    echo homewarden >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\thomewarden\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
    # Whatever mirror the build used (a local cache, a proxy), the Pi updates from Debian.
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

# The root is named by PARTUUID (the fixed disk signature), so the same line
# boots from an SD card (mmcblk0p2), a USB disk (sda2) or qemu's virtio (vda2).
write_boot_config() {
    local root=$1
    cat >"$root/etc/fstab" <<FSTAB
# <device>                 <mount>         <type> <options>                               <dump> <pass>
PARTUUID=$PARTUUID_ROOT    /               ext4   rw,noatime,commit=60,errors=remount-ro  0      1
PARTUUID=$PARTUUID_BOOT    /boot/firmware  vfat   rw,noatime,fmask=0077,dmask=0077        0      2
FSTAB
    # Kernel upgrades rewrite cmdline.txt from this file (raspi-firmware's hook).
    if [ -f "$root/etc/default/raspi-firmware" ]; then
        sed -i -e '/^#\?ROOTPART=/c\ROOTPART=PARTUUID='"$PARTUUID_ROOT" "$root/etc/default/raspi-firmware"
    fi
    local cmdline=$root/boot/firmware/cmdline.txt
    [ -f "$cmdline" ] || { echo "build-image: raspi-firmware wrote no cmdline.txt" >&2; return 1; }
    sed -i -e "s|root=[^ ]*|root=PARTUUID=$PARTUUID_ROOT|" "$cmdline"
    grep -q "root=PARTUUID=$PARTUUID_ROOT" "$cmdline" || sed -i -e "s|\$| root=PARTUUID=$PARTUUID_ROOT|" "$cmdline"
    log "cmdline.txt: $(cat "$cmdline")"
}

# Every path of TAR must be in the ext4 IMG with the same type and size:
# mke2fs -d reads tar through libarchive and has dropped entries silently before.
check_ext4_against_tar() {
    python3 "$REPO/image/fscompare.py" tar-vs-ext4 "$1" "$2"
}
