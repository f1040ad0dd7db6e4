# Sourced by the other scripts: installs what a fresh Debian machine lacks to
# build authgate (with --with-browser, to run its browser tests; with
# --with-load, to run benches/load.py). pingora-core builds zlib-ng with
# cmake and jemalloc is built with make; nothing else is needed beyond the
# Rust toolchain (TLS is rustls + ring: no OpenSSL headers).
ensure_prereqs() {
  local missing=() browser="" load=""
  for a in "$@"; do
    case $a in
      --with-browser) browser=1 ;;
      --with-load) load=1 ;;
    esac
  done
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  command -v make >/dev/null 2>&1 || missing+=(make)
  # tests/security.rs drives curl over HTTP/2 (it reproduces a bug that
  # hyper's client does not show).
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  # The browser end-to-end tests (tests/browser.rs) drive Debian's headless
  # Chromium through ChromeDriver; AUTHGATE_SKIP_BROWSER_TESTS=1 skips them.
  if [ "${AUTHGATE_SKIP_BROWSER_TESTS:-}" != 1 ] && [ -n "$browser" ]; then
    [ -x "${AUTHGATE_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
    [ -x "${AUTHGATE_CHROMEDRIVER:-/usr/bin/chromedriver}" ] || missing+=(chromium-driver)
  fi
  # benches/load.py: nginx (upstream and peer proxy), wrk, HAProxy (peer).
  # oha comes from crates.io (`cargo install oha --locked`, ~20 min).
  if [ -n "$load" ]; then
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
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
