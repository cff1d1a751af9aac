#!/bin/bash
# Escape attempts from a rootless sandbox, run as an ordinary user (as_user.py): every one must
# fail, as under root (test_escapes.sh), and the user's own things stay out of reach: of the
# user's home the job sees nothing (drover run: only the checkout), and the user's other
# processes can be neither signalled nor traced.
SB_ROOTLESS=1
. "$(dirname "$0")/../sandbox/lib.sh"
[ "$(id -u)" != 0 ] || { echo "not ok 1 - runs as an ordinary user (as_user.py)"; exit 1; }
E=/run/t/escape
for who in circleci root; do
        for mode in keyctl bpf module mount userns sethostname; do
                expect_escape_fails "$mode refused ($who)" --user $who -- $E $mode
        done
        expect_escape_fails "ptrace of the user's own process and of pid 1 refused ($who)" \
                --user $who -- $E ptrace $$
        expect_escape_fails "no writes to the host root ($who)" --user $who -- \
                $E write /etc/drover-escape /usr/drover-escape /drover-escape "$HOME/drover-escape"
        expect_escape_fails "no fds inherited ($who)" --user $who -- $E fds 9>/dev/null 11</dev/null
        expect_escape_fails "syscalls off the allow-list ($who)" --user $who -- $E allowlist
done
for mode in mount module userns; do
        expect_escape_fails "$mode refused as root without seccomp" --no-seccomp --user root -- $E $mode
done
if sb -- unshare -U true 2>/dev/null; then bad "unshare -U refused"; else ok "unshare -U refused"; fi

# the user's secrets: nothing of the home is there
mkdir -p "$HOME/.ssh" "$HOME/.aws" "$HOME/.config/drover-rl-test"
echo TOPSECRET-SSH > "$HOME/.ssh/id_rsa"; echo TOPSECRET-AWS > "$HOME/.aws/credentials"
echo TOPSECRET-CFG > "$HOME/.config/drover-rl-test/token"
trap 'rm -rf "$HOME/.config/drover-rl-test" "$HOME/rl-proj"; kill $SLEEPER 2>/dev/null' EXIT
for who in circleci root; do
        out=$(sb --user $who -- sh -c "ls -A '$HOME' '$HOME/.ssh' '$HOME/.aws' '$HOME/.config' 2>&1;
                cat '$HOME/.ssh/id_rsa' '$HOME/.aws/credentials' 2>&1;
                grep -rs TOPSECRET /home /root /tmp /var/tmp /run 2>/dev/null" 2>&1)
        # only "No such file" answers: nothing listed, nothing read
        if echo "$out" | grep -v 'No such file or directory' | grep -q .; then
                bad "the user's home is hidden ($who)"; echo "$out" | sed 's/^/#   /'
        else ok "the user's home is hidden ($who)"; fi
done

# drover run: the job sees the checkout and nothing else of the home
mkdir -p "$HOME/rl-proj/.circleci"
cat > "$HOME/rl-proj/.circleci/config.yml" <<YML
version: 2.1
jobs:
  look:
    machine: true
    steps:
      - run: ls ~/project/.circleci/config.yml && echo CHECKOUT-SEEN
      - run: ls -A $HOME $HOME/.ssh $HOME/.aws $HOME/.config 2>&1; cat $HOME/.ssh/id_rsa 2>&1; grep -rs TOPSECRET / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; true
workflows:
  w:
    jobs: [look]
YML
out=$(cd "$HOME/rl-proj" && "$DROVER" run --store "$HOME/rl-proj/store" look 2>&1)
if echo "$out" | grep -q CHECKOUT-SEEN && ! echo "$out" | grep -q -e TOPSECRET -e id_rsa; then
        ok "drover run: the checkout, not the home"
else bad "drover run: the checkout, not the home"; echo "$out" | tail -20 | sed 's/^/#   /'; fi
bad_owned=$(find "$HOME/rl-proj" "$HOME/.cache/drover" ! -user "$(id -u)" 2>/dev/null | head -5)
if [ -z "$bad_owned" ]; then ok "everything left in the home is the user's"
else bad "everything left in the home is the user's: $bad_owned"; fi

# the user's other processes: invisible, not signalled (kill -1 inside reaches only the job)
sleep 300 & SLEEPER=$!
if sb -- kill -0 $SLEEPER 2>/dev/null; then bad "kill -0 of the user's process fails"; else ok "kill -0 of the user's process fails"; fi
sb --user root -- sh -c 'kill -9 -1' >/dev/null 2>&1
sb -- sh -c 'kill -9 -1' >/dev/null 2>&1
if kill -0 $SLEEPER 2>/dev/null; then ok "kill -9 -1 inside spares the user's processes"
else bad "kill -9 -1 inside spares the user's processes"; fi
if sb -- test -e /proc/$SLEEPER; then bad "the user's pid $SLEEPER invisible"; else ok "the user's pid $SLEEPER invisible"; fi
expect_escape_fails "ptrace of the user's sleeper refused" -- $E ptrace $SLEEPER
finish
