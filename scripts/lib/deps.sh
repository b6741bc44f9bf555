# Debian 12 packages l4lb needs to build, test and run its demo. Sourced by scripts/*.
L4LB_PACKAGES=(
  build-essential g++ meson ninja-build pkg-config
  libdpdk-dev dpdk libnuma-dev libpcap-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libgtest-dev prometheus-cpp-dev
  libcpp-httplib-dev   # REST API server (l4lbd) and client (l4lbctl)
  prometheus
  python3-scapy python3-pytest iproute2 iputils-ping ethtool tcpdump procps
  clang-14 libclang-rt-14-dev   # libFuzzer targets (fuzz/)
  qemu-system-x86 debootstrap cpio qemu-utils systemd   # VM image and test (deploy/, pmd-tests/vm_test.py)
  valgrind   # scripts/bench --callgrind (per-stage instruction counts)
)

# Installs only what is missing, so a prepared machine starts at once.
install_deps() {
  local missing=()
  for p in "${L4LB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing packages and not root; run as root or install them: ${missing[*]}" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Configures (once) and builds the appliance and the unit tests in build/.
build_l4lb() {
  local dir=${1:-build}
  [ -f "$dir/build.ninja" ] || meson setup "$dir" --buildtype=debugoptimized
  meson compile -C "$dir"
}
