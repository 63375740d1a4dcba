#!/usr/bin/env bash
# Builds the homewarden SD-card image from Debian trixie arm64, without loop
# devices and without Docker:
#
#   scripts/build-image.sh                       -> target/image/homewarden-<version>-arm64.img (+ .img.xz, .sha256)
#   scripts/build-image.sh --flavour raspios     -> target/image/homewarden-<version>-raspios-arm64.img
#   scripts/build-image.sh --from-cache DIR      rebuild from exactly the .debs in DIR (a previous build's debs/)
#   scripts/build-image.sh --check-reproducible  build twice from scratch, compare, name the differing files
#
# Flavours (image/flavours/*.sh): debian (default), Debian's kernel and
# firmware, for Raspberry Pi 3/3+/4/400/CM4; raspios, the Raspberry Pi OS
# kernels and firmware from the Raspberry Pi archive (which the builder must
# reach), adding Zero 2 W and Pi 5/500/CM5.
#
# Steps: tools -> sources (the flavour's archives and keys) -> agent (aarch64
# cross build) -> base root (mmdebstrap, qemu-user binfmt runs the maintainer
# scripts) -> appliance laid on -> cleanup -> rootfs tar -> boot FAT
# (mkfs.vfat + mtools) and root ext4 (mke2fs -d tar) -> partition table
# (sfdisk) written into the file -> compressed copy and sha256.
#
# Reproducible: the same SOURCE_DATE_EPOCH (default: the last commit's time) and
# the same packages give the same bytes: fixed disk signature, file system UUIDs
# and hash seed, timestamps clamped, no logs, caches, machine-id or host keys.
#
# Environment:
#   SOURCE_DATE_EPOCH            the build's time (default: last commit)
#   HW_MIRROR                    Debian mirror (default http://deb.debian.org/debian)
#   HW_RASPIOS_MIRROR            Raspberry Pi archive (raspios flavour; default http://archive.raspberrypi.com/debian)
#   HW_RASPIOS_KEY               its signing key as a file or URL (default: fetched from the archive); pinned by fingerprint
#   HW_OUT                       output directory (default target/image)
#   HOMEWARDEN_AARCH64_BIN       use this agent binary instead of building one (a shortcut for development)
#   HW_XZ_LEVEL                  xz preset of the compressed copy (default 2)
#   HW_BASE_CACHE                where base roots are cached (default target/image-cache)
set -euo pipefail
# The body is one function, parsed whole before it runs: editing this file
# during a 15-minute build cannot derail the build.
main() {
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

SUITE=trixie
MIRROR=${HW_MIRROR:-http://deb.debian.org/debian}
OUT=${HW_OUT:-$REPO/target/image}
# Base roots are cached by their inputs; .debs by name_version_arch.
CACHE=${HW_BASE_CACHE:-$REPO/target/image-cache}
DEBS=$REPO/target/image-cache/debs
# xz -6 takes ~7 min on 2 busy cores for 4 % less; -9 for a release.
XZ_LEVEL=${HW_XZ_LEVEL:-2}
# Fixed identities: a build must not pick random ones. The disk signature makes
# the partitions' PARTUUIDs <sig>-01 and <sig>-02; the boot line names root by it.
DISK_ID=0x4877644e
BOOT_VOLID=4877B007
ROOT_UUID=4877644e-7270-4f6f-8a00-000000000002
ROOT_HASH_SEED=4877644e-6861-7368-8a00-000000000002
PARTUUID_ROOT=4877644e-02
PARTUUID_BOOT=4877644e-01
BOOT_MIB=256

from_cache=""
check_repro=0
flavour=debian
while [ $# -gt 0 ]; do
    case $1 in
        --from-cache) from_cache=$(realpath "${2:?--from-cache needs a directory}"); shift 2 ;;
        --flavour) flavour=${2:?--flavour needs a name (debian, raspios)}; shift 2 ;;
        --check-reproducible) check_repro=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "build-image: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" -eq 0 ] || { echo "build-image: run as root (mmdebstrap --mode=root, chroot, apt-get)" >&2; exit 1; }

T0=$(date +%s)
step_no=0
step() {
    step_no=$((step_no + 1))
    printf '\n[build-image %4ds] step %d: %s\n' "$(( $(date +%s) - T0 ))" "$step_no" "$*" >&2
}
log() { printf '[build-image %4ds]   %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { printf 'build-image: %s\n' "$*" >&2; exit 1; }

case $flavour in
    */*|.*|"") flavour_file="" ;;
    *) flavour_file=$REPO/image/flavours/$flavour.sh ;;
esac
if [ -z "$flavour_file" ] || [ ! -f "$flavour_file" ]; then
    known=("$REPO"/image/flavours/*.sh)
    known=("${known[@]##*/}")
    printf -v known_list '%s, ' "${known[@]%.sh}"
    echo "build-image: --flavour: unknown flavour '$flavour' (known: ${known_list%, })" >&2
    exit 2
fi
# shellcheck source=image/flavours/debian.sh
. "$flavour_file"

if [ $check_repro -eq 1 ]; then
    exec "$REPO/image/check-reproducible.sh" --flavour "$flavour" ${from_cache:+--from-cache "$from_cache"}
fi

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
NAME=homewarden-$VERSION$FLAVOUR_SUFFIX-arm64
export LC_ALL=C.UTF-8 TZ=UTC

# ---------------------------------------------------------------------------
step "tools (mmdebstrap, qemu-user binfmt, mke2fs 1.47.2, dosfstools, mtools, sfdisk, xz, qemu-system-arm, python3-venv, gpg)"
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in mmdebstrap qemu-user-static dosfstools mtools fdisk xz-utils dpkg-dev arch-test python3 python3-venv gpg curl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
# qemu-system-arm from bookworm-backports (10.x): it boots trixie's kernel, and a
# machine that already has backports' qemu-utils cannot take bookworm's 7.2.
need_bp=()
dpkg-query -W -f='${Status}' qemu-system-arm 2>/dev/null | grep -q 'ok installed' || need_bp+=(qemu-system-arm)
# mke2fs before 1.47.1 copies atime/ctime with -d and cannot read tar files;
# 1.47.2 (bookworm-backports) builds the same ext4 from the same tar every time.
mke2fs_ok=0
if dpkg --compare-versions "$(dpkg-query -W -f='${Version}' e2fsprogs 2>/dev/null || echo 0)" ge 1.47.2; then
    mke2fs_ok=1
fi
[ $mke2fs_ok -eq 1 ] || need_bp+=(e2fsprogs libarchive13)
if [ ${#need[@]} -gt 0 ] || [ ${#need_bp[@]} -gt 0 ]; then
    # shellcheck source=scripts/backports.sh
    . "$REPO/scripts/backports.sh"
    if add_backports; then log "added bookworm-backports (pinned low)"; fi
    apt-get update -qq
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    if [ ${#need_bp[@]} -gt 0 ]; then
        log "installing ${need_bp[*]} from bookworm-backports"
        apt-get install -y -qq --no-install-recommends -t bookworm-backports "${need_bp[@]}" >/dev/null
    fi
fi
dpkg --compare-versions "$(dpkg-query -W -f='${Version}' e2fsprogs)" ge 1.47.2 || die "mke2fs >= 1.47.2 needed"
# Maintainer scripts of arm64 packages run under qemu-user through binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    log "registering qemu-aarch64 in binfmt_misc"
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
fi
arch-test arm64 >/dev/null || die "arm64 binaries do not run here (qemu-user binfmt)"
log "mke2fs $(dpkg-query -W -f='${Version}' e2fsprogs), mmdebstrap $(dpkg-query -W -f='${Version}' mmdebstrap), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"

# ---------------------------------------------------------------------------
# Before the long steps: a flavour whose archive cannot be reached or whose key
# does not match fails here, not after the agent's build.
mkdir -p "$OUT" "$CACHE" "$DEBS"
if [ -z "$from_cache" ]; then
    step "sources: flavour $flavour ($FLAVOUR_BOARDS)"
    flavour_mirrors || exit 1
    for m in "${MIRRORS[@]}"; do log "$m"; done
fi

# ---------------------------------------------------------------------------
step "agent: aarch64 cross build"
if [ -n "${HOMEWARDEN_AARCH64_BIN:-}" ]; then
    AGENT=$HOMEWARDEN_AARCH64_BIN
    log "using $AGENT (HOMEWARDEN_AARCH64_BIN)"
else
    scripts/build-aarch64.sh
    AGENT=$REPO/target/aarch64/aarch64-unknown-linux-gnu/release/homewarden
fi
[ -x "$AGENT" ] || die "no agent binary at $AGENT"
qemu-aarch64-static "$AGENT" --version >/dev/null || die "$AGENT does not run as aarch64"
log "agent $(sha256sum "$AGENT" | cut -c1-16)…, $(stat -c %s "$AGENT") bytes"

# ---------------------------------------------------------------------------
work=$OUT/work
# shellcheck source=image/lib.sh
. "$REPO/image/lib.sh"
fresh_dir "$work"
mapfile -t PACKAGES < <(appliance_packages)
[ ${#PACKAGES[@]} -gt 0 ] || die "empty package list"

if [ -n "$from_cache" ]; then
    step "base root from the local .deb cache $from_cache (mmdebstrap, ${#PACKAGES[@]} packages)"
    ls "$from_cache"/*.deb >/dev/null 2>&1 || die "$from_cache: no .deb files"
    # A repository of exactly these .debs: apt can only pick these versions.
    # Not a flat one: mmdebstrap finds the essential set through the indices'
    # architecture, which a flat repository does not have.
    repo_dir=$work/local-repo
    mkdir -p "$repo_dir/pool" "$repo_dir/dists/$SUITE/main/binary-arm64"
    ln -s "$from_cache"/*.deb "$repo_dir/pool/"
    (cd "$repo_dir" && dpkg-scanpackages --multiversion pool /dev/null 2>/dev/null \
        >"dists/$SUITE/main/binary-arm64/Packages")
    # mmdebstrap takes apt's warning about a repository without a Release file
    # for an error.
    local idx=$repo_dir/dists/$SUITE/main/binary-arm64/Packages
    {
        printf 'Origin: homewarden-deb-cache\nLabel: homewarden-deb-cache\nSuite: %s\nCodename: %s\n' "$SUITE" "$SUITE"
        printf 'Components: main\nArchitectures: arm64\nDate: %s\nSHA256:\n' "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
        printf ' %s %s main/binary-arm64/Packages\n' "$(sha256sum "$idx" | cut -d' ' -f1)" "$(stat -c %s "$idx")"
    } >"$repo_dir/dists/$SUITE/Release"
    MIRRORS=("deb [trusted=yes] copy://$repo_dir $SUITE main")
    base_key=cache-$( (printf '%s\n' "${PACKAGES[@]}"; cat "$idx"; echo "$SOURCE_DATE_EPOCH"; \
        sha256sum "$REPO/image/base.sh") | sha256sum | cut -c1-16)
else
    step "base root: mmdebstrap $SUITE arm64 (${#PACKAGES[@]} packages; maintainer scripts under qemu-user)"
    # Keyed by everything that goes in: a base is rebuilt when any input moves,
    # and the mirror's state on that day (recorded in the manifest).
    base_key=$( (printf '%s\n' "${PACKAGES[@]}" "${MIRRORS[@]}"; echo "$SOURCE_DATE_EPOCH"; date -u +%F; \
        sha256sum "$REPO/image/base.sh") | sha256sum | cut -c1-16)
fi
base_tar=$CACHE/base-$base_key.tar
if [ -f "$base_tar" ] && [ -f "$base_tar.manifest" ]; then
    log "cached: $base_tar"
else
    # shellcheck source=image/base.sh
    . "$REPO/image/base.sh"
    rm -rf "$base_tar.tmp"
    # From a cache, its .debs are also what apt finds in the root's archive
    # directory: the packages installed inside the chroot come from there.
    build_base "$base_tar.tmp" "${from_cache:-$DEBS}" "$base_tar.manifest.tmp" "${PACKAGES[@]}"
    mv "$base_tar.manifest.tmp" "$base_tar.manifest"
    mv "$base_tar.tmp" "$base_tar"
    find "$CACHE" -maxdepth 1 -name 'base-*.tar' ! -name "base-$base_key.tar" -mmin +60 -delete
fi
log "base $(du -m "$base_tar" | cut -f1) MB"

# ---------------------------------------------------------------------------
step "appliance: lay the agent and overlays/ onto the root"
root=$work/root
mkdir -p "$root"
tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$base_tar" -C "$root"
appliance_lay "$root" "$AGENT"

step "cleanup: no logs, caches, machine-id, host keys; boot line names root by PARTUUID"
appliance_cleanup "$root"
write_boot_config "$root"

# ---------------------------------------------------------------------------
step "boot partition tree and root tar (timestamps clamped to SOURCE_DATE_EPOCH)"
bootdir=$work/boot
mkdir -p "$bootdir"
cp -a "$root/boot/firmware/." "$bootdir/"
find "$root/boot/firmware" -mindepth 1 -delete
install -m 0644 "$REPO/image/homewarden.yaml" "$bootdir/homewarden.yaml"
install -m 0644 "$REPO/image/README-boot.txt" "$bootdir/homewarden-README.txt"
find "$bootdir" "$root" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
# Only security.* xattrs (file capabilities): mke2fs 1.47.2 silently drops every
# tar entry after one carrying a POSIX ACL (it lost /var/log/suricata after
# /var/log/journal), and nothing here needs ACLs baked in.
tar --create --file="$work/rootfs.tar" --directory="$root" --sort=name --numeric-owner \
    --xattrs --xattrs-include='security.*' --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime .
if tar -tvf "$work/rootfs.tar" --xattrs 2>/dev/null | grep -q 'posix_acl'; then
    die "rootfs.tar still carries POSIX ACLs"
fi
log "rootfs.tar $(du -m "$work/rootfs.tar" | cut -f1) MB, $(tar -tf "$work/rootfs.tar" | wc -l) entries"

# ---------------------------------------------------------------------------
step "file systems: FAT boot (mkfs.vfat --invariant + mcopy), ext4 root (mke2fs -d rootfs.tar)"
boot_img=$work/boot.vfat
rm -f "$boot_img"
mkfs.vfat -F 32 --invariant -i "$BOOT_VOLID" -n HWBOOT -C "$boot_img" $((BOOT_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
# Sorted, so the FAT directory order does not depend on readdir order.
(cd "$bootdir" && find . -mindepth 1 -type d | sort | while read -r d; do
    mmd -i "$boot_img" "::${d#./}"
done)
(cd "$bootdir" && find . -type f | sort | while read -r f; do
    mcopy -p -m -o -i "$boot_img" "$f" "::${f#./}"
done)
# mtools stamps directories it makes with the clock: fake it for them too.
root_img=$work/root.ext4
rm -f "$root_img"
tar_mb=$(( $(stat -c %s "$work/rootfs.tar") / 1048576 ))
# Room for the appliance's state until first boot grows the root to the card.
root_mb=$(( (tar_mb * 12 / 10 + 256 + 3) / 4 * 4 ))
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -t ext4 -L hwroot -U "$ROOT_UUID" \
    -E "hash_seed=$ROOT_HASH_SEED,root_owner=0:0" -m 1 -b 4096 \
    -d "$work/rootfs.tar" "$root_img" "${root_mb}M"
log "boot ${BOOT_MIB} MB FAT32, root ${root_mb} MB ext4"

step "check: every tar entry is in the ext4 (mke2fs -d tar must not drop any)"
check_ext4_against_tar "$work/rootfs.tar" "$root_img"

# ---------------------------------------------------------------------------
step "partition table (MBR, disk signature $DISK_ID) and partitions written into the file"
img=$OUT/$NAME.img
rm -f "$img" "$img.xz" "$img.sha256" "$img.xz.sha256"
boot_start=8192
boot_sectors=$((BOOT_MIB * 2048))
root_start=$((boot_start + boot_sectors))
root_sectors=$((root_mb * 2048))
total=$(( (root_start + root_sectors) * 512 ))
truncate -s "$total" "$img.tmp"
sfdisk --quiet --no-reread --no-tell-kernel "$img.tmp" <<EOF
label: dos
label-id: $DISK_ID
unit: sectors
sector-size: 512

start=$boot_start, size=$boot_sectors, type=c, bootable
start=$root_start, size=$root_sectors, type=83
EOF
dd if="$boot_img" of="$img.tmp" bs=1M seek=$((boot_start / 2048)) conv=notrunc,sparse status=none
dd if="$root_img" of="$img.tmp" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
mv "$img.tmp" "$img"

step "manifest, compressed copy (xz -$XZ_LEVEL) and sha256"
cp "$base_tar.manifest" "$OUT/$NAME.manifest"
xz -T2 "-$XZ_LEVEL" -k -f -c "$img" >"$img.xz.tmp"
mv "$img.xz.tmp" "$img.xz"
(cd "$OUT" && sha256sum "$NAME.img" >"$NAME.img.sha256" && sha256sum "$NAME.img.xz" >"$NAME.img.xz.sha256")
cp "$work/rootfs.tar" "$OUT/$NAME.rootfs.tar"
rm -rf "$work/root" "$work/local-repo"

elapsed=$(( $(date +%s) - T0 ))
log "done in $((elapsed / 60)) min $((elapsed % 60)) s"
printf '%s\n' "image:       $img ($(( $(stat -c %s "$img") / 1048576 )) MB raw)" \
    "compressed:  $img.xz ($(( $(stat -c %s "$img.xz") / 1048576 )) MB)" \
    "sha256:      $(cut -d' ' -f1 "$img.sha256") (img), $(cut -d' ' -f1 "$img.xz.sha256") (xz)" \
    "manifest:    $OUT/$NAME.manifest ($(grep -vc '^#' "$OUT/$NAME.manifest") packages)" \
    "build time:  ${elapsed} s"
}

main "$@"; exit
