#!/bin/bash
# Image rootfs and overlay lowers: the image is the root, writes land in the job's upper layer.
. "$(dirname "$0")/lib.sh"
BB=$(command -v busybox || echo /bin/busybox)
[ -x "$BB" ] || { echo "1..0 # SKIP busybox missing (Debian busybox-static)"; exit 77; }
T=$(mktemp -d /var/tmp/drover-rootfs.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/img/bin" "$T/img/etc" "$T/top/etc"
cp "$BB" "$T/img/bin/busybox"
for c in sh ls cat id echo touch ps mount wc; do ln -s busybox "$T/img/bin/$c"; done
echo image > "$T/img/etc/which"; echo top > "$T/top/etc/which"; echo only-low > "$T/img/etc/low"

out=$("$DROVER" sandbox --rootfs "$T/img" -- /bin/sh -c 'cat /etc/which; id -u; ls /bin/busybox; ps | wc -l; echo x > /dev/null && echo devnull-ok')
echo "$out" | sed 's/^/# /'
echo "$out" | grep -qx image && ok "image is the root" || bad "image is the root"
echo "$out" | grep -qx 3434 && ok "job user inside the image" || bad "job user inside the image"
echo "$out" | grep -q devnull-ok && ok "/dev inside the image" || bad "/dev inside the image"
out=$("$DROVER" sandbox --user root --rootfs "$T/img" -- /bin/sh -c 'echo new > /newfile && cat /newfile; echo changed > /etc/which; cat /etc/which; ls -ln /bin/busybox')
echo "$out" | grep -qx new && echo "$out" | grep -qx changed && ok "root writes to the overlay" || bad "root writes: $out"
echo "$out" | grep -q ' 0 *0 ' && ok "image files owned by inside root (idmapped)" || bad "idmapped ownership: $out"
[ ! -e "$T/img/newfile" ] && [ "$(cat "$T/img/etc/which")" = image ] && ok "the image on the host is unchanged" || bad "the image on the host changed"
out=$("$DROVER" sandbox --lower "$T/top" --lower "$T/img" -- /bin/sh -c 'cat /etc/which /etc/low')
[ "$out" = "top
only-low" ] && ok "lowers stack top first" || bad "lowers: $out"
finish
