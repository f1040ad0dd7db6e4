# Sourced by the other scripts: installs what a fresh Debian machine lacks to
# build authgate (and, with --with-browser, to run its browser tests). pingora-core builds zlib-ng with cmake; nothing else is
# needed beyond the Rust toolchain (TLS is rustls + ring: no OpenSSL headers).
ensure_prereqs() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  # tests/security.rs drives curl over HTTP/2 (it reproduces a bug that
  # hyper's client does not show).
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  # The browser end-to-end tests (tests/browser.rs) drive Debian's headless
  # Chromium through ChromeDriver; AUTHGATE_SKIP_BROWSER_TESTS=1 skips them.
  if [ "${AUTHGATE_SKIP_BROWSER_TESTS:-}" != 1 ] && [ "${1:-}" = --with-browser ]; then
    [ -x "${AUTHGATE_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
    [ -x "${AUTHGATE_CHROMEDRIVER:-/usr/bin/chromedriver}" ] || missing+=(chromium-driver)
  fi
  if ((${#missing[@]})); then
    echo "authgate: installing build prerequisites: ${missing[*]}" >&2
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
      if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
        echo "authgate: please install ${missing[*]} (e.g. apt-get install ${missing[*]}) and run again" >&2
        exit 1
      fi
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
