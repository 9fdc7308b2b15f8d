#!/usr/bin/env bash
# Install or upgrade chatopsd as a systemd service, from this checkout.
#
#   sudo ./systemd/install.sh                  # install, or upgrade in place (run it again)
#   DESTDIR=/tmp/root ./systemd/install.sh     # everything under /tmp/root; the system untouched
#
# What it does (each step is skipped or redone safely on a second run):
#   /opt/chatopsd                     a venv with chatopsd and its dependencies (not editable:
#                                     the service's sandbox cannot read a checkout under /home)
#   /etc/systemd/system/chatopsd.service   the unit (replaced on upgrade)
#   /etc/chatopsd/chatopsd.toml       from config.example.toml, only if absent (yours is kept)
#   /etc/chatopsd/credentials/        0700; one empty 0600 file per token the unit loads, only if
#                                     absent, so an unused platform's token need not exist
# Under DESTDIR the venv's scripts name the DESTDIR path: a scratch root to inspect or test,
# not a package to copy elsewhere. systemctl is never run under DESTDIR.
set -euo pipefail

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${DESTDIR:-}"
root="${root%/}"
python="${PYTHON:-python3}"
prefix="$root/opt/chatopsd"
etc="$root/etc/chatopsd"
unit_dir="$root/etc/systemd/system"
unit="$src/systemd/chatopsd.service"

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0), or set DESTDIR=/some/dir to install into a scratch root"
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$python is older than 3.11 (set PYTHON=/path/to/python3.11)"
"$python" -c 'import venv, ensurepip' 2>/dev/null \
  || die "$python cannot make a venv: apt-get install python3-venv"

# 1. The venv. Re-created only when missing or broken (e.g. after a Python upgrade).
if ! "$prefix/bin/python" -c 'import sys' 2>/dev/null; then
  say "creating the venv in $prefix"
  rm -rf "$prefix"
  "$python" -m venv "$prefix"
fi
# A regular (not editable) install with its dependencies, built from a clean copy of the
# checkout: pip builds in the source tree otherwise, and a stale build/ there could ship a
# module that was deleted since. pip always reinstalls a local directory, so a re-run with the
# same version number still takes the new code. CHATOPSD_PIP_ARGS adds pip options (a local
# index or wheel cache, a proxy).
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
tar -C "$src" --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude='*.db' -cf - . | tar -C "$stage" -xf -
# shellcheck disable=SC2086
"$prefix/bin/python" -m pip install -q --disable-pip-version-check ${CHATOPSD_PIP_ARGS:-} "$stage"
"$prefix/bin/chatopsd" --version >/dev/null || die "$prefix/bin/chatopsd does not run"
version="$("$prefix/bin/chatopsd" --version)"

# 2. The unit. Its ExecStart is /opt/chatopsd/bin/chatopsd (the real path, also under DESTDIR).
install -d -m 0755 "$unit_dir"
install -m 0644 "$unit" "$unit_dir/chatopsd.service"

# 3. Config and credentials: never overwrite what the operator wrote.
install -d -m 0755 "$etc"
if [ ! -e "$etc/chatopsd.toml" ]; then
  install -m 0644 "$src/config.example.toml" "$etc/chatopsd.toml"
  fresh_config=1
else
  fresh_config=0
fi
install -d -m 0700 "$etc/credentials"
chmod 0700 "$etc/credentials"
# The names the unit's LoadCredential= lines ask for; systemd refuses to start the service if
# one is missing, and an empty credential is ignored (the env variable or the file is used).
creds=$(sed -n 's|^LoadCredential=\([a-z_]*\):.*|\1|p' "$unit")
for name in $creds; do
  if [ ! -e "$etc/credentials/$name" ]; then
    (umask 0077 && : >"$etc/credentials/$name")
  fi
done

if [ -z "$root" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if systemctl is-active --quiet chatopsd; then
    systemctl restart chatopsd
    say "restarted the running service"
  fi
fi

cat <<EOF
Installed $version in ${prefix}.

Next steps:
  1. Edit $etc/chatopsd.toml$([ "$fresh_config" = 1 ] && printf ' (a copy of config.example.toml)' || printf ' (kept as it was)'):
     enable your platform sections ([slack], [discord], [mattermost]), [pagerduty] and
     [[status.sources]]. No tokens in it. Check it with:
       $prefix/bin/chatopsd check-config $etc/chatopsd.toml
  2. Write each token you use into its file (the others stay empty):
EOF
for name in $creds; do
  say "       printf '%s' 'TOKEN' > $etc/credentials/$name"
done
cat <<EOF
  3. Start it:
       systemctl enable --now chatopsd
       systemctl status chatopsd         # each connection's state
       $prefix/bin/chatopsd ctl health
EOF
