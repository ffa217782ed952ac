#!/usr/bin/env bash
# Runs the README's two commands as a brand-new Debian 12 user would: in a bare root made by debootstrap,
# with a copy of this checkout and nothing that earlier work left on this machine. Not part of CI; run it
# whenever setup, the build or the README's commands change.
#   scripts/fresh-check.sh [ROOT]   default /var/tmp/qnas-fresh; needs root; logs go to ROOT.<step>.log
#   QNAS_FRESH_KEEP=1               reuse an existing ROOT (saves the debootstrap, but keeps what an earlier
#                                   run installed in it, so the check is no longer that of a new user)
#   QNAS_FRESH_STEPS="run test"     which README commands to run; "none" sets up the root and only looks in
#   QNAS_FRESH_SHARED=1             also copy ../shared (the tests that need it skip without it)
set -euo pipefail
die() { echo "fresh-check: $*" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
[[ -n ${1-/var/tmp/qnas-fresh} ]] || die "ROOT is empty"
root=$(realpath -m "${1:-/var/tmp/qnas-fresh}")
[[ $root != / ]] || die "refusing ROOT /"
steps=${QNAS_FRESH_STEPS:-run test}
for s in $steps; do [[ $s =~ ^(run|test|none)$ ]] || die "unknown step '$s' in QNAS_FRESH_STEPS (run, test, none)"; done
[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, mount and chroot need it)"

# Deepest first (sort -r puts dev/pts before dev). A lazy unmount is the fallback so that a process still
# holding a mount cannot leave it behind for rm -rf to walk into.
unmount_all() {
  findmnt -rn -o TARGET | sort -r | while read -r m; do
    [[ $m == "$root" || $m == "$root"/* ]] || continue
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}
trap unmount_all EXIT
trap 'exit 130' INT TERM HUP

if ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends debootstrap ||
    { apt-get update -q && apt-get install -y -q --no-install-recommends debootstrap; }
fi

# A run killed with SIGKILL leaves its mounts; clear them before rm -rf or before mounting again.
unmount_all
bootstrap="kept"
if [[ ${QNAS_FRESH_KEEP:-0} != 1 || ! -x $root/bin/bash ]]; then
  # rm -rf through a bind mount of /dev would delete the host's /dev: refuse if anything is still mounted.
  mounted=$(findmnt -rn -o TARGET | grep -F "$root/" || true)
  [[ -z $mounted ]] || die "still mounted under $root: $mounted"
  rm -rf --one-file-system "$root"
  echo "fresh-check: debootstrap bookworm into $root (log $root.debootstrap.log)"
  t0=$(date +%s)
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $root.debootstrap.log"
  bootstrap=$(($(date +%s) - t0))
fi

# The checkout as git sees it (tracked and untracked-not-ignored files): no build/, no node_modules, so the
# README's commands have to make everything themselves. A new copy every time, also with QNAS_FRESH_KEEP.
rm -rf "$root/root/qnas" "$root/root/shared"
mkdir -p "$root/root/qnas"
git -C "$repo" ls-files -co --exclude-standard -z |
  tar -C "$repo" --null -T - --ignore-failed-read -cf - | tar -C "$root/root/qnas" -xf -
if [[ ${QNAS_FRESH_SHARED:-0} == 1 && -d $repo/../shared ]]; then cp -a "$repo/../shared" "$root/root/shared"; fi

mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# npm ci (the ORT harness) verifies TLS against node's own CAs; the host's bundle may hold a site CA that
# a TLS-inspecting network needs, and the chroot's ca-certificates (once setup.sh installs it) would not.
mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca.crt"
# Only an apt proxy is carried over; the chroot's sources are debootstrap's own mirror line.
for f in /etc/apt/apt.conf.d/*; do
  if grep -qiE '::proxy' "$f"; then cp "$f" "$root/etc/apt/apt.conf.d/"; fi
done
env_in=(HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca.crt)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [[ -n ${!v-} ]]; then env_in+=("$v=${!v}"); fi
done

# The commands are the first two lines of the README's first sh block, comments stripped, so that this
# checks what the README tells people to type.
mapfile -t readme < <(awk '/^```sh/{f=1; next} /^```/{if (f) exit} f' "$repo/README.md" | sed 's/[[:space:]]*#.*//' | head -2)
[[ ${#readme[@]} -eq 2 && -n ${readme[0]} && -n ${readme[1]} ]] || die "no two commands in README.md's first sh block"
declare -A command=([run]=${readme[0]} [test]=${readme[1]} [none]='ls scripts && cat /etc/debian_version')

rows=("$(printf '%-12s %5s %7s  %s' step exit seconds command)" "$(printf '%-12s %5s %7s  %s' debootstrap 0 "$bootstrap" "--variant=minbase bookworm")")
failed=0
for s in $steps; do
  log=$root.$s.log
  [[ $s == none ]] && log=/dev/null
  echo "fresh-check: $s: ${command[$s]} (log $log)"
  t0=$(date +%s)
  if chroot "$root" /usr/bin/env -i "${env_in[@]}" bash -c "cd /root/qnas && ${command[$s]}" 2>&1 | tee "$log"; then
    rc=0
  else
    rc=${PIPESTATUS[0]}
  fi
  rows+=("$(printf '%-12s %5s %7s  %s' "$s" "$rc" "$(($(date +%s) - t0))" "${command[$s]}")")
  ((rc == 0)) || failed=1
done
printf 'fresh-check: %s\n' "${rows[@]}"
exit $failed
