# shellcheck shell=bash disable=SC2034  # sourced: the caller reads what it sets
# Flavour "raspios", sourced by scripts/build-image.sh --flavour raspios:
# Debian trixie with the Raspberry Pi OS kernels and boot firmware from the
# Raspberry Pi archive, which adds the Pi 5 family. Only for builders that can
# reach that archive (or a mirror of it: HW_RASPIOS_MIRROR).
# Boards: Raspberry Pi 3, 3+, 4, 400, CM4, Zero 2 W (kernel8.img, rpi-v8) and
# Raspberry Pi 5, 500, CM5 (kernel_2712.img, rpi-2712).

FLAVOUR_BOARDS="Raspberry Pi 3, 3+, 4, 400, CM4, Zero 2 W, 5, 500, CM5"
# Image name: homewarden-<version>-raspios-arm64.img
FLAVOUR_SUFFIX="-raspios"
RASPIOS_MIRROR=${HW_RASPIOS_MIRROR:-http://archive.raspberrypi.com/debian}
# The Raspberry Pi archive's signing key, pinned: the key file fetched from the
# archive is used only if its primary key has this fingerprint.
RASPIOS_KEY_FPR=CF8A1AF502A2AA2D763BAE7E82B129927FA3303E
# Where the build keeps it on the build host (see flavour_mirrors), and where
# the installed raspberrypi-archive-keyring package keeps it on the Pi.
RASPIOS_BUILD_KEYRING=/etc/apt/keyrings/homewarden-raspberrypi-archive.gpg
RASPIOS_KEYRING_ON_PI=/usr/share/keyrings/raspberrypi-archive-keyring.pgp

# Both arm64 kernels (the firmware picks one by board), the Pi's raspi-firmware
# (boot firmware and the hooks that lay kernels, initramfs and device trees
# onto /boot/firmware), Wi-Fi firmware, and the archive's keyring so the Pi
# keeps verifying its updates.
flavour_packages() {
    printf '%s\n' linux-image-rpi-v8 linux-image-rpi-2712 raspi-firmware firmware-brcm80211 \
        raspberrypi-archive-keyring
}

# raspios_keyring URL FINGERPRINT OUT: fetches URL (an armored key, or a local
# file path), refuses it unless its primary key's fingerprint is FINGERPRINT,
# and writes it as a binary keyring to OUT (temp file, then rename).
raspios_keyring() {
    local url=$1 want=$2 out=$3 tmp got
    tmp=$(mktemp)
    if [ -f "$url" ]; then
        cp "$url" "$tmp"
    elif ! curl -fsS --max-time 30 -o "$tmp" "$url" 2>"$tmp.err"; then
        echo "build-image: cannot fetch the Raspberry Pi archive key $url ($(tr '\n' ' ' <"$tmp.err" | sed 's/ *$//')): the raspios flavour needs the Raspberry Pi archive or a mirror of it (HW_RASPIOS_MIRROR)" >&2
        rm -f "$tmp" "$tmp.err"
        return 1
    fi
    rm -f "$tmp.err"
    # gpg fails on a file that holds no key: that is an empty fingerprint here.
    got=$( { gpg --batch --no-default-keyring --with-colons --show-keys "$tmp" 2>/dev/null || true; } |
        awk -F: '$1 == "pub" { pub = 1; next } pub && $1 == "fpr" { print $10; exit }')
    if [ "$got" != "$want" ]; then
        echo "build-image: $url: key fingerprint '${got:-none (not an OpenPGP key)}', expected $want: refusing it" >&2
        rm -f "$tmp"
        return 1
    fi
    gpg --batch --yes --dearmor -o "$out.tmp" "$tmp" 2>/dev/null || cp "$tmp" "$out.tmp"
    rm -f "$tmp"
    chmod 0644 "$out.tmp"
    mv "$out.tmp" "$out"
}

# Fills MIRRORS for a build from the network: Debian, then the Raspberry Pi
# archive signed by its pinned key (apt takes the higher version where both
# carry a package, as on Raspberry Pi OS). apt reads signed-by on the build
# host, through the path as given, as its unprivileged _apt user: the key must
# sit where that user can read it (a build tree under /root is not), under
# a .gpg name (bookworm's apt ignores .pgp keyrings).
flavour_mirrors() {
    mkdir -p "${RASPIOS_BUILD_KEYRING%/*}"
    chmod a+rx "${RASPIOS_BUILD_KEYRING%/*}"
    raspios_keyring "${HW_RASPIOS_KEY:-$RASPIOS_MIRROR/raspberrypi.gpg.key}" "$RASPIOS_KEY_FPR" \
        "$RASPIOS_BUILD_KEYRING" || return 1
    MIRRORS=("deb $MIRROR $SUITE main non-free-firmware"
        "deb [signed-by=$RASPIOS_BUILD_KEYRING] $RASPIOS_MIRROR $SUITE main")
}

# Debian's sources and the Raspberry Pi archive's, verified with the keyring
# the raspberrypi-archive-keyring package installed.
flavour_apt_sources() {
    local root=$1
    debian_apt_sources "$root"
    [ -f "$root$RASPIOS_KEYRING_ON_PI" ] || {
        echo "build-image: raspberrypi-archive-keyring installed no $RASPIOS_KEYRING_ON_PI" >&2
        return 1
    }
    cat >"$root/etc/apt/sources.list.d/raspi.sources" <<SRC
Types: deb
URIs: http://archive.raspberrypi.com/debian
Suites: $SUITE
Components: main
Signed-By: $RASPIOS_KEYRING_ON_PI
SRC
}

# The boot files the Pi's firmware needs, by board: what the Raspberry Pi
# packages' hooks must have laid onto /boot/firmware.
RASPIOS_BOOT_FILES=(
    kernel8.img initramfs8          # Pi 3, 4, 400, CM4, Zero 2 W (rpi-v8)
    kernel_2712.img initramfs_2712  # Pi 5, 500, CM5 (rpi-2712)
    bootcode.bin                    # Pi 3 (later boards boot from EEPROM)
    start4.elf fixup4.dat           # Pi 4 family (the Pi 5's firmware is in its EEPROM)
    bcm2710-rpi-3-b.dtb bcm2711-rpi-4-b.dtb bcm2712-rpi-5-b.dtb
    overlays/
)

# Raspberry Pi OS leaves config.txt and cmdline.txt to the image builder:
# written here, after checking that every boot file above is in place.
flavour_boot_config() {
    local root=$1 fw=$1/boot/firmware f missing=()
    for f in "${RASPIOS_BOOT_FILES[@]}"; do
        [ -e "$fw/$f" ] || missing+=("$f")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "build-image: /boot/firmware lacks ${missing[*]} (the Raspberry Pi packages' hooks did not lay them)" >&2
        return 1
    fi
    cat >"$fw/config.txt" <<'CFG'
# homewarden (Raspberry Pi OS flavour): read by the Pi's firmware at power-on.
# 64-bit kernel: kernel8.img, or kernel_2712.img on a Pi 5/500/CM5, with the
# initramfs that belongs to it.
arm_64bit=1
auto_initramfs=1
# No display: no rainbow splash.
disable_splash=1
CFG
    # eth0/wlan0 names, as the placement expects; the root by PARTUUID, so the
    # same line boots from an SD card or USB.
    printf 'console=serial0,115200 console=tty1 root=PARTUUID=%s rootfstype=ext4 fsck.repair=yes net.ifnames=0 rootwait\n' \
        "$PARTUUID_ROOT" >"$fw/cmdline.txt"
}
