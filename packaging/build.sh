#!/usr/bin/env bash
# build.sh [deb|rpm|all] OUTDIR: build drover's .deb and/or .rpm from this source tree.
# A fresh release build (meson, -O2, stripped) is installed into a staging dir; the .deb is made
# with dpkg-deb (dependencies from dpkg-shlibdeps), the .rpm with rpmbuild from the same stage.
# Set DROVER_PKG_BUILDDIR to reuse a build dir between runs (it must be configured by this script).
set -euo pipefail
what=${1:-}
out=${2:-}
case "$what" in deb|rpm|all) ;; *) echo "usage: $0 deb|rpm|all OUTDIR" >&2; exit 2 ;; esac
[ -n "$out" ] || { echo "usage: $0 deb|rpm|all OUTDIR" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/drover-pkg.XXXXXX")
trap 'rm -rf "$work"' EXIT

build=${DROVER_PKG_BUILDDIR:-$work/build}
# Debian's hardening flags (stack protector, _FORTIFY_SOURCE, PIE, relro, bindnow). Warnings do
# not fail a package build (the CI build with -Werror guards them). A reused build dir configured
# with other flags is set up again.
if command -v dpkg-buildflags >/dev/null; then
        eval "$(cd "$src" && DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
        export CFLAGS="$CFLAGS $CPPFLAGS"
fi
stamp="release ${CFLAGS:-} | ${LDFLAGS:-}"
if [ -f "$build/build.ninja" ] && [ "$(cat "$build/.drover-pkg-flags" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$build"
fi
if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" --prefix=/usr --buildtype=release -Db_ndebug=true \
                -Dwerror=false >"$work/setup.log" 2>&1 || { cat "$work/setup.log" >&2; exit 1; }
        printf '%s' "$stamp" >"$build/.drover-pkg-flags"
fi
# Only the binaries are compiled (tests are not packaged); if something else is ever installed,
# fall back to building everything.
ninja -C "$build" agent/drover agent/drover-agent sandbox/drover-sandbox >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
stage=$work/stage
if ! DESTDIR=$stage meson install -C "$build" --no-rebuild --strip --quiet >"$work/install.log" 2>&1; then
        rm -rf "$stage"
        ninja -C "$build" >>"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
        DESTDIR=$stage meson install -C "$build" --no-rebuild --strip --quiet >/dev/null
fi
# drover-sandbox may be a custom target (the musl build), which meson's --strip leaves alone
strip --strip-unneeded "$stage/usr/bin/drover-sandbox" 2>/dev/null || true
version=$(meson introspect "$build" --projectinfo | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')

# Debian policy: compressed man pages, copyright, changelog; state dirs owned by the package.
gzip -9n "$stage"/usr/share/man/man*/*.[0-9]
install -D -m 0644 "$src/packaging/deb/copyright" "$stage/usr/share/doc/drover/copyright"
install -d -m 0750 "$stage/var/lib/drover" "$stage/etc/drover/tls"
unitdir=$(cd "$stage" && dirname "$(find . -name drover-agent.service | head -1)" | sed 's|^\.||')
# Anything else installed (static libs of the tree, headers) is not part of the package.
find "$stage" -name '*.a' -delete
find "$stage" -depth -type d -empty -not -path "$stage/var/lib/drover" -not -path "$stage/etc/drover/tls" -delete

build_deb() {
        local arch pkg deps size
        arch=$(dpkg --print-architecture)
        pkg=$work/deb
        cp -a "$stage" "$pkg"
        mkdir -p "$pkg/DEBIAN"
        install -D -m 0644 "$src/packaging/deb/lintian-overrides" "$pkg/usr/share/lintian/overrides/drover"
        # dpkg-shlibdeps wants a debian/control next to it.
        mkdir -p "$work/shlib/debian"
        printf 'Source: drover\n\nPackage: drover\nArchitecture: any\n' >"$work/shlib/debian/control"
        deps=$(cd "$work/shlib" && dpkg-shlibdeps -O "$pkg/usr/bin/drover" "$pkg/usr/bin/drover-agent" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
        [ -n "$deps" ] || { echo "build.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
        printf 'drover (%s-1) unstable; urgency=medium\n\n  * Package built from the source tree by packaging/build.sh.\n\n -- drover developers <drover@example.org>  %s\n' \
                "$version" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)}")" \
                | gzip -9n >"$pkg/usr/share/doc/drover/changelog.Debian.gz"
        size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
        sed -e "s|@VERSION@|$version-1|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" \
                -e "s|@SHLIBS@|$deps|" "$src/packaging/deb/control.in" >"$pkg/DEBIAN/control"
        install -m 0755 "$src/packaging/deb/postinst" "$src/packaging/deb/prerm" \
                "$src/packaging/deb/postrm" "$pkg/DEBIAN/"
        (cd "$pkg" && find etc -type f -not -path 'etc/drover/tls/*' | sed 's|^|/|' | sort) >"$pkg/DEBIAN/conffiles"
        (cd "$pkg" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
        chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"
        dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out/drover_${version}-1_${arch}.deb" >/dev/null
        echo "$out/drover_${version}-1_${arch}.deb"
}

build_rpm() {
        local arch
        arch=$(uname -m)
        mkdir -p "$work/rpm"/{BUILD,RPMS,SOURCES,SPECS,SRPMS,BUILDROOT}
        sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@STAGE@|$stage|" \
                -e "s|@UNITDIR@|$unitdir|" "$src/packaging/rpm/drover.spec.in" >"$work/rpm/SPECS/drover.spec"
        rpmbuild --quiet -bb --define "_topdir $work/rpm" --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
                "$work/rpm/SPECS/drover.spec" >"$work/rpm.log" 2>&1 || { cat "$work/rpm.log" >&2; exit 1; }
        cp "$work/rpm/RPMS/drover-$version-1.$arch.rpm" "$out/"
        echo "$out/drover-$version-1.$arch.rpm"
}

case "$what" in
deb) build_deb ;;
rpm) build_rpm ;;
all) build_deb; build_rpm ;;
esac
