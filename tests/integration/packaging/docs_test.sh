#!/usr/bin/env bash
# docs_test.sh: the man pages and bash completion cover what the binary offers: every command of
# `drover --help` is in drover(1) and completes; every key `drover agent --print-config` prints is
# in drover-agent.yaml(5); the man pages render without warnings.
set -uo pipefail
: "${DROVER:?}" "${DROVER_SRC:?}"
pk=$DROVER_SRC/packaging
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1${2:+ # $2}"; }

cmds=$("$DROVER" --help | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
[ -n "$cmds" ] && ok "help_lists_commands" || not_ok "help_lists_commands"

for m in drover.1 drover-agent.yaml.5 drover-agent.8; do
        w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$pk/$m" 2>&1 >/dev/null)
        [ -z "$w" ] && ok "man_${m}_renders_clean" || not_ok "man_${m}_renders_clean" "$w"
done

# shellcheck disable=SC1090
source "$pk/drover.bash-completion"
complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _drover; echo "${COMPREPLY[*]}"; }
for c in $cmds; do
        if grep -Eq "^\.B(R)? $c( |\$)|^\.B $c\\\\" "$pk/drover.1" || grep -q "^\.B $c " "$pk/drover.1"; then
                ok "man1_documents_$c"
        else
                not_ok "man1_documents_$c"
        fi
        case " $(complete_words drover "${c:0:2}") " in
        *" $c "*) ok "completion_offers_$c" ;;
        *) not_ok "completion_offers_$c" ;;
        esac
done
case " $(complete_words drover check --c) " in
*" --config "*" --control-plane "* | *" --cgroup-root "*) ok "completion_check_options" ;;
*) not_ok "completion_check_options" ;;
esac

# every --option a command's --help shows is in drover(1) and offered by the completion
man1=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$pk/drover.1")
for c in run config orb sandbox job check; do
        opts=$("$DROVER" $c --help 2>&1 | grep -oE -- '--[a-z][a-z-]+' | sort -u)
        missing_man=
        missing_comp=
        for o in $opts; do
                [ "$o" = --help ] && continue
                grep -q -- "$o" <<<"$man1" || missing_man="$missing_man $o"
                case " $(complete_words drover $c x "$o") " in *" $o"*) ;; *) missing_comp="$missing_comp $o" ;; esac
        done
        [ -z "$missing_man" ] && ok "man1_has_every_${c}_option" || not_ok "man1_has_every_${c}_option" "missing:$missing_man"
        [ -z "$missing_comp" ] && ok "completion_has_every_${c}_option" || not_ok "completion_has_every_${c}_option" "missing:$missing_comp"
done

# every key the agent knows is documented (top-level and dotted keys of --print-config)
cfg=$(mktemp)
trap 'rm -f "$cfg" "$cfg.ci" "$cfg.keys"' EXIT
if "$DROVER" agent --print-config >"$cfg" 2>/dev/null && [ -s "$cfg" ]; then
        keys=$(python3 - "$cfg" <<'PY'
import sys, json
text = open(sys.argv[1]).read()
keys = []
try:
    doc = json.loads(text)
    def walk(d, pre):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, pre + k + ".")
            else:
                keys.append(pre + k)
    walk(doc, "")
except ValueError:
    # indentation-nested "key: value" lines; a key with nested keys is not itself a key, a key
    # followed only by "- item" lines (a list) is
    stack, parents = [], set()
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "-")):
            continue
        ind = len(line) - len(line.lstrip())
        k = line.strip().split(":", 1)[0]
        stack = [s for s in stack if s[0] < ind]
        if stack:
            parents.add(".".join(s[1] for s in stack))
        rest = line.split(":", 1)[1].strip() if ":" in line else ""
        full = ".".join([s[1] for s in stack] + [k])
        if rest == "":
            stack.append((ind, k))
        keys.append(full)
    keys = [k for k in keys if k not in parents]
print("\n".join(keys))
PY
)
        missing=
        for k in $keys; do
                grep -q "^\.B $(printf '%s' "$k" | sed 's/\./\\./g')\$" "$pk/drover-agent.yaml.5" || missing="$missing $k"
        done
        [ -z "$missing" ] && ok "man5_documents_every_agent_key" || not_ok "man5_documents_every_agent_key" "missing:$missing"
else
        not_ok "agent_print_config_works" "drover agent --print-config failed"
fi

# the shipped default config and the cloud-init example's config are accepted by the agent
# (it rejects unknown keys), and their drain_grace fits the unit's TimeoutStopSec
if "$DROVER" agent --print-config --config "$pk/agent.yaml" >"$cfg" 2>&1; then ok "default_config_accepted"; else
        not_ok "default_config_accepted" "$(head -1 "$cfg")"; fi
python3 - "$pk/cloud-init.yaml" "$cfg.ci" <<'PY'
import sys
text = open(sys.argv[1]).read()
# the block under "- path: /etc/drover/agent.yaml" ... "content: |" (no yaml module: stdlib only)
lines = text.splitlines()
i = next(n for n, l in enumerate(lines) if l.strip() == "- path: /etc/drover/agent.yaml")
j = next(n for n in range(i, len(lines)) if lines[n].strip() == "content: |")
body = []
for l in lines[j + 1:]:
    if l.strip() and not l.startswith("      "):
        break
    body.append(l[6:])
open(sys.argv[2], "w").write("\n".join(body) + "\n")
PY
if "$DROVER" agent --print-config --config "$cfg.ci" >"$cfg" 2>&1; then ok "cloud_init_config_accepted"; else
        not_ok "cloud_init_config_accepted" "$(head -1 "$cfg")"; fi
grace=$("$DROVER" agent --print-config --config "$pk/agent.yaml" | sed -n 's/^drain_grace: \([0-9]*\)s$/\1/p')
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)min$/\1/p' "$pk/drover-agent.service")
if [ -n "$grace" ] && [ -n "$stop" ] && [ "$grace" -lt $((stop * 60)) ]; then ok "drain_grace_below_timeout_stop"; else
        not_ok "drain_grace_below_timeout_stop" "drain_grace=${grace}s TimeoutStopSec=${stop}min"; fi

# the default config: every key --print-config knows is there (set, or commented out as
# "# key:"), and each key's comment sits right above it (no blank line in between)
"$DROVER" agent --print-config --config "$pk/agent.yaml" >"$cfg" 2>/dev/null
python3 - "$pk/agent.yaml" "$cfg" >"$cfg.keys" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
keys = [l.split(":", 1)[0] for l in open(sys.argv[2]).read().splitlines()
        if re.match(r"^[a-z_]+:", l)]
listed = {}
for n, l in enumerate(lines):
    m = re.match(r"^(?:# ?)?([a-z_]+):", l)
    if m:
        listed.setdefault(m.group(1), n)
bad = [k for k in keys if k not in listed]
for k, n in listed.items():
    if not lines[n].startswith("#") and (n == 0 or lines[n - 1].strip() == ""):
        bad.append(f"{k}(no comment above it)")
print(" ".join(bad))
PY
[ -z "$(tr -d ' \n' <"$cfg.keys")" ] && ok "default_config_lists_every_key_with_its_comment" ||
        not_ok "default_config_lists_every_key_with_its_comment" "$(cat "$cfg.keys")"
for k in idle_timeout exit_after_job max_jobs drain_grace; do
        grep -q "^$k:" "$pk/agent.yaml" && ok "default_config_has_autoscaling_key_$k" ||
                not_ok "default_config_has_autoscaling_key_$k"
done

# every docs/NAME.md a message, man page or shipped config names is installed by meson install
# as share/doc/drover/docs/NAME.md (the .deb and .rpm: packages_test.sh)
dest=$(mktemp -d)
refs=$("$DROVER_SRC/tests/integration/packaging/doc_refs.sh")
if [ -z "$refs" ]; then
        not_ok "doc_references_found"
elif ! DESTDIR=$dest meson install -C "$DROVER_BUILD" --no-rebuild --quiet >"$dest.log" 2>&1; then
        not_ok "meson_install_works" "$(tail -3 "$dest.log")"
else
        missing=
        for d in $refs; do
                [ -n "$(find "$dest" -path "*/share/doc/drover/docs/$d")" ] || missing="$missing $d"
        done
        [ -z "$missing" ] && ok "meson_install_has_every_referenced_doc" ||
                not_ok "meson_install_has_every_referenced_doc" "missing:$missing"
        [ -n "$(find "$dest" -path '*/man8/drover-agent.8')" ] && ok "meson_install_has_drover_agent_8" ||
                not_ok "meson_install_has_drover_agent_8"
        [ -x "$(find "$dest" -path '*/share/drover/drover-pki' | head -1)" ] && ok "meson_install_has_drover_pki" ||
                not_ok "meson_install_has_drover_pki"
fi
rm -rf "$dest" "$dest.log"

echo "1..$n"
[ $fails = 0 ]
