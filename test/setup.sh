#!/usr/bin/env bash
# Makes sure the real programs the tests drive are installed. As root it installs the
# missing Debian packages; otherwise it says what to install and fails.
set -euo pipefail

# command → Debian package that provides it
declare -A PACKAGES=(
  [skopeo]=skopeo
  [podman]=podman
  [umoci]=umoci
  [docker-registry]=docker-registry
  [htpasswd]=apache2-utils
  [openssl]=openssl
  [tar]=tar
  [go]=golang-go
  [chromium]=chromium
  [python3]=python3
  [git]=git
  [buildah]=buildah
  [hardlink]=util-linux
  [nix-build]=nix-bin
  [busybox]=busybox-static
)

missing=()
for command in "${!PACKAGES[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${PACKAGES[$command]}")
done
# nginx lives in /usr/sbin, which a user's PATH may leave out.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
# Library packages have no command: check their files.
[ -d /usr/share/gocode/src/github.com/containerd/stargz-snapshotter/estargz ] || missing+=(golang-github-containerd-stargz-snapshotter-dev)
# The build tests' base image is made from busybox-static's /bin/busybox.
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
# The viz page test checks labels fit their boxes in the font viz sizes them for.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test/setup.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

echo "npm test needs these Debian packages: ${missing[*]}" >&2
echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
exit 1
