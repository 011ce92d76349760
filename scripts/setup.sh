#!/usr/bin/env bash
# Installs what taskrt needs to build and test on Debian 12 (bookworm), from Debian's
# packages only. Safe to run again: it installs only what is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config   # compiler and build system
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler  # gRPC 1.51, protobuf 3.21
  libabsl-dev        # Abseil: Status, Mutex, strings, time
  libasio-dev        # standalone Asio: the workers' and daemon's event loops
  libcli11-dev       # command lines of taskrtd, taskrt, taskrt-bench
  nlohmann-json3-dev # JSON inputs/outputs of the built-in handlers and the CLI
  libssl-dev         # SHA-256 (libcrypto) for hash.sha256
  libsqlite3-dev     # the task journal (durable accept, restart recovery)
  libgoogle-perftools-dev  # tcmalloc_minimal, the allocator of taskrtd and taskrt-worker
  libgtest-dev libgmock-dev  # tests
  python3            # the CLI test checks JSON output with it
  python3-pytest     # the Python tests and the security tests (tests/python, tests/security)
  python3-grpcio python3-protobuf  # the Python SDK (taskrt.Client) and its generated stubs
  python3-cloudpickle  # Python functions sent by value (lambdas, closures, __main__)
  python3-venv python3-setuptools python3-wheel  # `pip install --no-build-isolation ./python`
  util-linux         # setpriv and prlimit: the security tests' other uid and fd limit
  openssl            # the security tests make a test CA for TLS
  systemd            # systemd-analyze, to verify deploy/taskrtd.service
  libsystemd-dev     # sd_notify: taskrtd tells systemd it is ready (Type=notify), its watchdog
  libcpp-httplib-dev # taskrtd --http: the HTTP server of /metrics and the dashboard (TLS via OpenSSL)
  prometheus-cpp-dev # taskrtd --http: the metric registry and the Prometheus text format (core only)
  chromium chromium-driver python3-selenium  # the dashboard's browser test (tests/dashboard)
  zsh                # the completion test checks the zsh completion's syntax
  help2man lintian   # man pages from --help; the .deb test runs lintian (cpack -G DEB)
  clang-14 libclang-rt-14-dev  # the fuzz build (scripts/fuzz.sh): clang++-14 -fsanitize=fuzzer
)
# nodejs, npm: the offline check of deploy/kubernetes (tests/deploy/kubernetes_test.sh);
# only where no node is installed (another node, e.g. NodeSource's, brings its own npm).
if ! command -v node >/dev/null; then PACKAGES+=(nodejs npm); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
