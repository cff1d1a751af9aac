#!/usr/bin/env bash
# packages_test.sh: build the .deb and .rpm with packaging/build.sh, check their metadata and
# contents, lintian (no errors), install the .deb into a throwaway root with dpkg --root
# (maintainer scripts run chrootless with DPKG_ROOT) and check files, user, unit enablement
# (never started), conffile handling on upgrade, and systemd-analyze verify of the unit.
set -uo pipefail
: "${DROVER_SRC:?}" "${DROVER_BUILD:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
# t NAME CMD...: one TAP line; on failure show CMD's output and the file under test ($tmp/out).
not_ok() {
        n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"
        sed 's/^/# /' "$tmp/tout"; [ -f "$tmp/out" ] && sed 's/^/#  | /' "$tmp/out"
}
t() { local name=$1; shift; if "$@" >"$tmp/tout" 2>&1; then ok "$name"; else not_ok "$name"; fi; }

# Reuse one release build dir between runs (incremental); the packages come from build.sh.
export DROVER_PKG_BUILDDIR=$DROVER_BUILD/packaging-release
if ! "$DROVER_SRC/packaging/build.sh" all "$tmp/out-pkgs" >"$tmp/build.log" 2>&1; then
        sed 's/^/# /' "$tmp/build.log"; echo "Bail out! build.sh failed"; exit 1
fi
deb=$(ls "$tmp"/out-pkgs/drover_*.deb)
rpm=$(ls "$tmp"/out-pkgs/drover-*.rpm)

# --- .deb metadata and contents ---
dpkg-deb -I "$deb" >"$tmp/info"
dpkg-deb -c "$deb" >"$tmp/contents"
cp "$tmp/info" "$tmp/out"
t "deb_depends_derived_by_shlibdeps" grep -Eq '^ Depends: .*libc6 \(>= [0-9.]+\).*libcurl4' "$tmp/info"
t "deb_depends_on_runtime_tools" grep -Eq '^ Depends: .*iproute2, iptables, git' "$tmp/info"
t "deb_has_maintainer_scripts" grep -Eq 'postinst' "$tmp/info"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$tmp/conffiles"
cp "$tmp/conffiles" "$tmp/out"
t "deb_conffiles" grep -qx /etc/drover/agent.yaml "$tmp/conffiles"
cp "$tmp/contents" "$tmp/out"
for f in ./usr/bin/drover ./usr/bin/drover-agent ./usr/bin/drover-sandbox ./lib/systemd/system/drover-agent.service ./etc/drover/agent.yaml \
        ./etc/default/drover-agent ./usr/share/man/man1/drover.1.gz \
        ./usr/share/man/man5/drover-agent.yaml.5.gz ./usr/share/bash-completion/completions/drover \
        ./usr/share/doc/drover/copyright; do
        t "deb_contains_${f##*/}" grep -q " $f\$" "$tmp/contents"
done
# every docs/NAME.md that a message or man page names (doc_refs.sh), the agent's man page, drover-pki
refs=$("$DROVER_SRC/tests/integration/packaging/doc_refs.sh")
missing=
for d in $refs ./usr/share/man/man8/drover-agent.8.gz ./usr/share/drover/drover-pki; do
        case $d in ./*) f=$d ;; *) f=./usr/share/doc/drover/docs/$d ;; esac
        grep -q " $f\$" "$tmp/contents" || missing="$missing $f"
done
t "deb_contains_every_referenced_doc" test -n "$refs" -a -z "$missing"
t "deb_has_no_static_libs" bash -c "! grep -q '\\.a\$' '$tmp/contents'"

# --- .rpm metadata and contents ---
t "rpm_info" bash -c "rpm -qip '$rpm' | grep -q '^Name *: drover'"
rpm -qlp "$rpm" >"$tmp/rpmfiles" 2>/dev/null
cp "$tmp/rpmfiles" "$tmp/out"
t "rpm_contains_binary_and_unit" bash -c "grep -qx /usr/bin/drover '$tmp/rpmfiles' && grep -qx /usr/bin/drover-sandbox '$tmp/rpmfiles' && grep -qx /usr/bin/drover-agent '$tmp/rpmfiles' && grep -q '/systemd/system/drover-agent.service\$' '$tmp/rpmfiles'"
missing=
for d in $refs /usr/share/man/man8/drover-agent.8.gz /usr/share/drover/drover-pki; do
        case $d in /*) f=$d ;; *) f=/usr/share/doc/drover/docs/$d ;; esac
        grep -qx "$f" "$tmp/rpmfiles" || missing="$missing $f"
done
t "rpm_contains_every_referenced_doc" test -n "$refs" -a -z "$missing"
rpm -qp --configfiles "$rpm" >"$tmp/out" 2>/dev/null
t "rpm_config_noreplace" grep -qx /etc/drover/agent.yaml "$tmp/out"
rpm -qp --requires "$rpm" >"$tmp/out" 2>/dev/null
t "rpm_requires_libs_and_tools" bash -c "grep -q '^libcurl.so.4' '$tmp/out' && grep -qx iptables '$tmp/out'"
rpm -qp --scripts "$rpm" >"$tmp/out" 2>/dev/null
t "rpm_scripts_enable_never_start" bash -c "grep -q 'systemctl --no-reload enable drover-agent.service' '$tmp/out' && ! grep -Eq 'systemctl (start|restart)|enable --now' '$tmp/out'"

# the .rpm unpacks into a throwaway root (scriptlets need a real RPM system: checked by content)
RR=$tmp/rpmroot
mkdir -p "$RR"
rpm --root "$RR" --initdb >"$tmp/tout" 2>&1
rpm --root "$RR" -i --nodeps --noscripts "$rpm" >"$tmp/out" 2>&1
t "rpm_installs_into_root" test -x "$RR/usr/bin/drover" -a -f "$RR/etc/drover/agent.yaml" -a -d "$RR/var/lib/drover"
t "rpm_installed_binary_runs" "$RR/usr/bin/drover" check --help

# --- lintian: no errors (warnings allowed; overrides in packaging/deb/lintian-overrides) ---
lintian --no-tag-display-limit "$deb" >"$tmp/out" 2>&1
t "lintian_no_errors" bash -c "! grep -q '^E:' '$tmp/out'"

# --- install into a throwaway root ---
R=$tmp/root
mkdir -p "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/info" "$R/etc"
: >"$R/var/lib/dpkg/status"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$R/etc/shadow"
printf 'root:*::\n' >"$R/etc/gshadow"
: >"$R/etc/subuid"
: >"$R/etc/subgid"
chmod 0640 "$R/etc/shadow" "$R/etc/gshadow"
dpkg --root="$R" --force-script-chrootless --force-depends -i "$deb" >"$tmp/out" 2>&1
t "deb_installs_into_root" test $? = 0
t "postinst_says_how_to_configure" grep -q 'write /etc/drover/agent.yaml and /etc/drover/join-token' "$tmp/out"
t "installed_files" test -x "$R/usr/bin/drover" -a -f "$R/etc/drover/agent.yaml" -a -f "$R/lib/systemd/system/drover-agent.service"
cp "$R/etc/passwd" "$tmp/out"
t "drover_system_user" grep -Eq '^drover:x:[0-9]{1,3}:[0-9]+:drover build agent:/var/lib/drover:/usr/sbin/nologin$' "$R/etc/passwd"
t "drover_group" grep -q '^drover:x:' "$R/etc/group"
t "drover_owns_sandbox_uid_range" grep -qx 'drover:1073741824:67108864' "$R/etc/subuid"
t "drover_owns_sandbox_gid_range" grep -qx 'drover:1073741824:67108864' "$R/etc/subgid"
t "state_dir_mode_0750" test "$(stat -c %a "$R/var/lib/drover")" = 750
t "unit_enabled" test -L "$R/etc/systemd/system/multi-user.target.wants/drover-agent.service"
t "unit_waits_for_join_token" grep -qx 'ConditionFileNotEmpty=/etc/drover/join-token' "$R/lib/systemd/system/drover-agent.service"
t "no_join_token_shipped" test ! -e "$R/etc/drover/join-token"
t "installed_binary_runs" "$R/usr/bin/drover" check --help
# the unit starts a binary the package installed, and it is the daemon
exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$R/lib/systemd/system/drover-agent.service")
t "unit_execstart_is_packaged" test -n "$exe" -a -x "$R$exe"
"$R$exe" --help >"$tmp/out" 2>&1
t "unit_execstart_is_the_agent" grep -q -- "--config" "$tmp/out"

readelf -d "$R/usr/bin/drover" >"$tmp/out" 2>&1
t "binary_hardened_pie_bindnow" bash -c "grep -q 'Flags: NOW PIE' '$tmp/out' && readelf --dyn-syms -W '$R/usr/bin/drover' | grep -q '__stack_chk_fail'"

# systemd-analyze verify inside the root (needs the base units and /bin/kill there; no systemd
# as PID 1 required).
cp -an /lib/systemd/system/. "$R/lib/systemd/system/" 2>/dev/null
mkdir -p "$R/bin" && cp /bin/kill "$R/bin/kill"
systemd-analyze verify --man=no --root="$R" drover-agent.service >"$tmp/out" 2>&1
st=$?
t "systemd_analyze_verify" test $st = 0 -a ! -s "$tmp/out"
grep -E '^(Type|KillMode|Delegate|NoNewPrivileges|ProtectSystem|WatchdogSec|TimeoutStopSec|Restart)=' \
        "$R/lib/systemd/system/drover-agent.service" >"$tmp/out"
t "unit_notify_watchdog_drain" bash -c "grep -qx Type=notify '$tmp/out' && grep -qx KillMode=mixed '$tmp/out' && grep -qx Delegate=yes '$tmp/out' && grep -q '^WatchdogSec=' '$tmp/out' && grep -qx Restart=on-failure '$tmp/out'"
# the unit must reject what verify can catch: a broken copy must fail
sed 's/^Type=notify/Type=bogus/' "$R/lib/systemd/system/drover-agent.service" >"$R/lib/systemd/system/broken-check.service"
systemd-analyze verify --man=no --root="$R" broken-check.service >"$tmp/out" 2>&1
t "verify_catches_a_broken_unit" grep -q 'Failed to parse service type' "$tmp/out"
rm -f "$R/lib/systemd/system/broken-check.service"

# --- upgrade keeps a modified conffile; purge removes state, keeps the user ---
echo "max_jobs: 3 # local edit" >>"$R/etc/drover/agent.yaml"
dpkg --root="$R" --force-script-chrootless --force-depends --force-confold -i "$deb" >"$tmp/out" 2>&1
t "reinstall_keeps_edited_conffile" grep -q 'local edit' "$R/etc/drover/agent.yaml"
t "upgrade_does_not_restart" grep -q 'restart drover-agent.service when convenient' "$tmp/out"
t "user_created_once" test "$(grep -c '^drover:' "$R/etc/passwd")" = 1
t "subuid_written_once" test "$(grep -c '^drover:' "$R/etc/subuid")" = 1
dpkg --root="$R" --force-script-chrootless --force-depends --purge drover >"$tmp/out" 2>&1
t "purge_removes_files_and_state" test ! -e "$R/usr/bin/drover" -a ! -e "$R/var/lib/drover" -a ! -e "$R/etc/drover/agent.yaml"
t "purge_unit_not_enabled" test ! -e "$R/etc/systemd/system/multi-user.target.wants/drover-agent.service"

echo "1..$n"
[ $fails = 0 ]
