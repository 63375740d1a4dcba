# shellcheck shell=bash disable=SC2034  # sourced: the caller reads what it sets
# Flavour "debian" (the default), sourced by scripts/build-image.sh: Debian
# trixie's generic arm64 kernel with Debian's raspi-firmware. Every package
# comes from Debian, so the whole image can be rebuilt from its manifest.
# Boards: Raspberry Pi 3, 3+, 4, 400, CM4 (Debian's kernel has no Pi 5 support).

FLAVOUR_BOARDS="Raspberry Pi 3, 3+, 4, 400, CM4"
# Image name: homewarden-<version>-arm64.img
FLAVOUR_SUFFIX=""

# The packages that boot it: kernel, the Pi's closed boot firmware, Wi-Fi firmware.
flavour_packages() {
    printf '%s\n' linux-image-arm64 raspi-firmware firmware-brcm80211
}

# Fills MIRRORS (mmdebstrap's mirror lines) for a build from the network.
flavour_mirrors() {
    MIRRORS=("deb $MIRROR $SUITE main non-free-firmware")
}

# The Pi updates from Debian, whatever mirror or cache the build used.
flavour_apt_sources() {
    local root=$1
    debian_apt_sources "$root"
}

# Debian's raspi-firmware writes config.txt and cmdline.txt (and rewrites
# cmdline.txt on kernel upgrades from /etc/default/raspi-firmware): both are
# pointed at the root's PARTUUID.
flavour_boot_config() {
    local root=$1
    if [ -f "$root/etc/default/raspi-firmware" ]; then
        sed -i -e '/^#\?ROOTPART=/c\ROOTPART=PARTUUID='"$PARTUUID_ROOT" "$root/etc/default/raspi-firmware"
    fi
    local cmdline=$root/boot/firmware/cmdline.txt
    [ -f "$cmdline" ] || { echo "build-image: raspi-firmware wrote no cmdline.txt" >&2; return 1; }
    sed -i -e "s|root=[^ ]*|root=PARTUUID=$PARTUUID_ROOT|" "$cmdline"
    grep -q "root=PARTUUID=$PARTUUID_ROOT" "$cmdline" || sed -i -e "s|\$| root=PARTUUID=$PARTUUID_ROOT|" "$cmdline"
}
