# shellcheck shell=bash
# The base root: Debian trixie arm64 from mmdebstrap. Sourced by
# scripts/build-image.sh; a change here invalidates the cached base.

# build_base OUT_TAR DEB_CACHE MANIFEST PACKAGE...; the sources are the
# mirror lines in MIRRORS.
build_base() {
    local out=$1 debs=$2 manifest=$3
    shift 3
    local include
    include=$(IFS=,; echo "$*")
    mkdir -p "$debs"
    local meta
    meta=$(mktemp -d)
    # $1 in the hooks is mmdebstrap's (the root), expanded by the hook's shell.
    # update-initramfs is a no-op while packages install (under emulation the
    # kernel's postinst and the triggers would build the initramfs twice, ~4 min
    # each) and runs once at the end, when every package's hooks are in.
    # Downloads land in DEB_CACHE (sync-out) and are reused (sync-in): apt takes a
    # cached name_version_arch.deb instead of fetching it again. The package
    # lists stay until the appliance step (the role's apt tasks then find every
    # package installed without fetching lists in an emulated chroot).
    # shellcheck disable=SC2016
    mmdebstrap --mode=root --format=tar --architectures=arm64 --variant=minbase \
        --components=main,non-free-firmware \
        --include="$include" \
        --aptopt='Acquire::Languages "none"' \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --skip=essential/unlink \
        --skip=cleanup/apt/lists \
        --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
        --setup-hook="sync-in $debs /var/cache/apt/archives/" \
        --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs' \
        --essential-hook='printf "#!/bin/sh\nexit 0\n" >"$1/usr/sbin/update-initramfs"; chmod 755 "$1/usr/sbin/update-initramfs"' \
        --customize-hook='rm "$1/usr/sbin/update-initramfs"; chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' \
        --customize-hook='for k in "$1"/lib/modules/*; do chroot "$1" update-initramfs -c -k "${k##*/}"; done' \
        --customize-hook="sync-out /var/cache/apt/archives $debs" \
        --customize-hook="copy-out /var/lib/dpkg $meta" \
        trixie "$out" "${MIRRORS[@]}"
    write_manifest "$meta/dpkg" "$debs" "$(IFS='|'; echo "${MIRRORS[*]}")" >"$manifest"
    rm -rf "$meta"
}

# write_manifest ADMINDIR DEB_CACHE SOURCES: one line per installed package,
# name version arch sha256-of-the-.deb, sorted.
write_manifest() {
    local admindir=$1 debs=$2 sources=$3
    printf '# homewarden image package manifest: package version architecture sha256(.deb)\n'
    printf '# source: %s (fetched %s), SOURCE_DATE_EPOCH=%s\n' "$sources" "$(date -u +%F)" "$SOURCE_DATE_EPOCH"
    dpkg-query --admindir="$admindir" -W -f='${Package} ${Version} ${Architecture}\n' | sort |
        while read -r name version arch; do
            local deb=$debs/${name}_${version//:/%3a}_${arch}.deb
            if [ -f "$deb" ]; then
                printf '%s %s %s %s\n' "$name" "$version" "$arch" "$(sha256sum "$deb" | cut -d' ' -f1)"
            else
                printf '%s %s %s %s\n' "$name" "$version" "$arch" "missing-from-cache"
            fi
        done
}
