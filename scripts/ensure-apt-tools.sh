#!/usr/bin/env bash
# Installs Debian's Chromium (browser tests of `rewind serve`'s page, through Playwright) and
# Prometheus + promtool (the metrics tests scrape real processes; `promtool check` vets the shipped
# config and alert rules) when they are missing. Sourced by scripts/test.sh after ensure-venv.sh;
# a no-op (no apt, no network) when /usr/bin/chromium, prometheus and promtool are all present.
# Never `playwright install`: it downloads a browser from the internet, which these machines cannot reach.
set -euo pipefail

_rewind_apt_missing() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  echo "${missing[@]:-}"
}

_rewind_apt_packages="$(_rewind_apt_missing)"
if [ -n "$_rewind_apt_packages" ]; then
  _rewind_sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "scripts/ensure-apt-tools.sh: missing $_rewind_apt_packages, this is not root and there is no sudo:" \
        "install them with apt-get, then run again" >&2
      return 1 2>/dev/null || exit 1
    fi
    _rewind_sudo=(sudo)
  fi
  echo "installing Debian packages: $_rewind_apt_packages" >&2
  "${_rewind_sudo[@]}" apt-get update -q >&2
  # shellcheck disable=SC2086  # the package list is meant to split
  "${_rewind_sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $_rewind_apt_packages >&2
  if [ -n "$(_rewind_apt_missing)" ]; then
    echo "scripts/ensure-apt-tools.sh: installed, but still missing: $(_rewind_apt_missing)" >&2
    return 1 2>/dev/null || exit 1
  fi
  unset _rewind_sudo
fi
unset _rewind_apt_packages
unset -f _rewind_apt_missing
