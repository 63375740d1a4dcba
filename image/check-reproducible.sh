#!/usr/bin/env bash
# Builds the image twice from scratch (no cached base root) with the same
# SOURCE_DATE_EPOCH and compares the results: build a from the mirror, build b
# from the local cache of exactly the .debs build a used (--from-cache), so one
# run shows both that a build repeats and that the cache rebuilds it. With
# --from-cache DIR both builds use DIR. On a mismatch it names what differs: entries of the
# two root tars (content or metadata), files of the two boot partitions, and
# for differences below the file level, the first differing byte offsets.
#
#   scripts/build-image.sh --check-reproducible [--flavour F] [--from-cache DIR]
#
# Results (hashes, build times): target/repro/result.txt
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
flavour=debian
from_cache=()
while [ $# -gt 0 ]; do
    case $1 in
        --flavour) flavour=$2; shift 2 ;;
        --from-cache) from_cache=(--from-cache "$2"); shift 2 ;;
        *) echo "check-reproducible: unknown option '$1'" >&2; exit 2 ;;
    esac
done
# shellcheck source=image/flavours/debian.sh
. "$REPO/image/flavours/$flavour.sh"
NAME=homewarden-$VERSION$FLAVOUR_SUFFIX-arm64
R=$REPO/target/repro
# shellcheck source=image/lib.sh
. "$REPO/image/lib.sh"
fresh_dir "$R"

secs=()
debs=$REPO/target/image-cache/debs
for run in a b; do
    args=(--flavour "$flavour" "${from_cache[@]}")
    if [ ${#from_cache[@]} -eq 0 ] && [ $run = b ]; then
        # Exactly the .debs of build a's manifest, in a directory of their own.
        mkdir -p "$R/debs-a"
        grep -v '^#' "$R/a/$NAME.manifest" | while read -r name version arch _; do
            ln "$debs/${name}_${version//:/%3a}_${arch}.deb" "$R/debs-a/"
        done
        args=(--flavour "$flavour" --from-cache "$R/debs-a")
    fi
    printf '\n[check-reproducible] build %s of 2 (SOURCE_DATE_EPOCH=%s)\n' "$run" "$SOURCE_DATE_EPOCH" >&2
    t=$(date +%s)
    HW_OUT=$R/$run HW_BASE_CACHE=$R/$run/cache "$REPO/scripts/build-image.sh" "${args[@]}" >"$R/$run.log" 2>&1 || {
        tail -n 30 "$R/$run.log" >&2
        echo "check-reproducible: build $run failed (log: $R/$run.log)" >&2
        exit 1
    }
    secs+=($(( $(date +%s) - t )))
    rm -rf --one-file-system "$R/$run/cache"
done

a=$R/a/$NAME.img
b=$R/b/$NAME.img
{
    echo "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "build a: ${secs[0]} s, build b: ${secs[1]} s (each from scratch: base root; agent cached)"
    [ ${#from_cache[@]} -gt 0 ] || echo "build a from the mirror, build b from the .deb cache of build a's manifest"
    for f in "$NAME.img" "$NAME.img.xz" "$NAME.rootfs.tar" "$NAME.manifest"; do
        echo "$(sha256sum "$R/a/$f" | cut -d' ' -f1)  a/$f"
        echo "$(sha256sum "$R/b/$f" | cut -d' ' -f1)  b/$f"
    done
} | tee "$R/result.txt" >&2

if cmp -s "$a" "$b" && cmp -s "$a.xz" "$b.xz"; then
    echo "check-reproducible: bit-identical: $(cut -d' ' -f1 "$a.sha256")" | tee -a "$R/result.txt"
    exit 0
fi

echo "check-reproducible: the two images DIFFER; what differs:" | tee -a "$R/result.txt" >&2
{
    if ! cmp -s "$R/a/$NAME.manifest" "$R/b/$NAME.manifest"; then
        echo "package manifests differ (the mirror moved between the builds?):"
        diff "$R/a/$NAME.manifest" "$R/b/$NAME.manifest" | grep '^[<>]' | grep -v '^. #' || true
    fi
    python3 "$REPO/image/fscompare.py" tar-vs-tar "$R/a/$NAME.rootfs.tar" "$R/b/$NAME.rootfs.tar" || true
    # The boot partitions, file by file.
    export MTOOLS_SKIP_CHECK=1
    for run in a b; do
        off=$(sfdisk -J "$R/$run/$NAME.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"]*512)')
        mkdir -p "$R/$run/bootfiles"
        mcopy -s -n -m -i "$R/$run/$NAME.img@@$off" ::/ "$R/$run/bootfiles/"
        mdir -/ -a -i "$R/$run/$NAME.img@@$off" :: >"$R/$run/bootfiles.list" 2>&1 || true
    done
    diff -rq "$R/a/bootfiles" "$R/b/bootfiles" | sed 's/^/boot partition: /' || true
    diff "$R/a/bootfiles.list" "$R/b/bootfiles.list" | sed 's/^/boot partition listing: /' || true
    echo "first differing bytes of the images (offset: a b, octal):"
    cmp -l "$a" "$b" 2>/dev/null | head -n 10 || true
} | tee -a "$R/result.txt" >&2
exit 1
