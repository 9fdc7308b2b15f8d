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
#
# The interpreter: $PYTHON, else the first python3 on PATH. The service runs it as a
# sandboxed user that cannot see /home, /root or /run/user (ProtectHome=yes), so a per-user
# build there (pyenv, asdf) is refused with the fix; the venv is rebuilt whenever the
# interpreter differs from the one it was made with (a re-run with another PYTHON=).
set -euo pipefail
umask 022 # the venv is read by the service's user: never inherit root's 077

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
# The binary itself (a pyenv shim is a script that runs another interpreter).
interpreter="$("$python" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
py_version="$("$interpreter" -c 'import platform; print(platform.python_version())')"

# 0. Can the service's user run it? Every directory from / must let others in, the binary
# (and libpython, if shared) be executable and the standard library readable by others, and
# none of it under what ProtectHome=yes hides.
blocked="$("$interpreter" - <<'PY'
import os, stat, sys, sysconfig


def refuse(why: str) -> None:
    print(why)
    sys.exit(1)


hidden = ("/home", "/root", "/run/user")
needs = {
    os.path.realpath(sys.executable): (stat.S_IXOTH, "executable"),
    os.path.realpath(os.__file__): (stat.S_IROTH, "readable"),
}
if sysconfig.get_config_var("Py_ENABLE_SHARED"):
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    lib = os.path.join(libdir, sysconfig.get_config_var("LDLIBRARY") or "")
    if os.path.isfile(lib):
        needs[os.path.realpath(lib)] = (stat.S_IROTH, "readable")
for path, (bit, what) in needs.items():
    for top in hidden:
        if path.startswith(top + "/"):
            refuse(f"{path} is under {top}, which the service cannot see (ProtectHome=yes)")
    parts = path.split("/")
    for i in range(2, len(parts)):
        folder = "/".join(parts[:i])
        mode = os.stat(folder).st_mode
        if not mode & stat.S_IXOTH:
            refuse(f"{folder} (mode {stat.S_IMODE(mode):04o}) cannot be entered by other users")
    mode = os.stat(path).st_mode
    if not mode & bit:
        refuse(f"{path} (mode {stat.S_IMODE(mode):04o}) is not {what} by other users")
PY
)" || die "the service cannot run this Python: $blocked; use a Python 3.11+ that every user can run, e.g. PYTHON=/usr/bin/python3 $0 (apt-get install python3 python3-venv)"

# 1. The venv. Re-created when missing, broken, or made with another interpreter.
built_on=""
[ -L "$prefix/bin/python" ] && built_on="$(readlink -f "$prefix/bin/python")"
if [ "$built_on" != "$interpreter" ] || ! "$prefix/bin/python" -c 'import sys' 2>/dev/null; then
  if [ -n "$built_on" ] && [ "$built_on" != "$interpreter" ]; then
    say "the venv in $prefix was made with $built_on: rebuilding it with $interpreter"
  else
    say "creating the venv in $prefix"
  fi
  rm -rf "$prefix"
  "$interpreter" -m venv "$prefix"
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
Installed $version in $prefix with Python $py_version ($interpreter).

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
