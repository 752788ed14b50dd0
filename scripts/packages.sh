# Sourced by scripts/local-*: install the Debian packages a script needs, and only those missing.
#
#   ensure_packages [--no-install-recommends] PACKAGE...
#
# Each package is checked by name with dpkg (not by a command it provides): a
# machine that has Slurm but not libpmix-dev, which Slurm's pmix plugin needs
# (shared/notes/machine-facts.md), gets libpmix-dev. Nothing is installed when
# every package is there, so `up` is fast and works offline on a prepared machine.
# Package scripts are kept from starting services: there is no init system here,
# and the local-* scripts start the daemons themselves.

missing_packages() {
  local pkg
  for pkg in "$@"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || echo "$pkg"
  done
}

ensure_packages() {
  local flags=()
  if [ "${1:-}" = --no-install-recommends ]; then flags+=("$1"); shift; fi
  local missing
  missing=$(missing_packages "$@")
  [ -n "$missing" ] || return 0
  # shellcheck disable=SC2086  # one word per package
  echo "$(basename "$0"): installing Debian's" $missing
  [ -e /usr/sbin/policy-rc.d ] || printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${flags[@]}" $missing >/dev/null
  missing=$(missing_packages "$@")
  [ -z "$missing" ] || { echo "$(basename "$0"): still not installed:" $missing >&2; exit 1; }
}

# Close every file this script inherited beyond stdin, stdout and stderr (and bash's own 255),
# before it starts daemons: a daemon keeps what it inherits for its whole life, and a lock
# held by the caller (flock FILE scripts/local-oar up) would stay held by postgres or slurmctld.
close_inherited_files() {
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    case $fd in 0 | 1 | 2 | 255) ;; *) eval "exec $fd>&-" 2>/dev/null || true ;; esac
  done
}
