#!/usr/bin/env bash
# System packages the test suite uses, installed by `make test` when running as root with apt:
# Debian's slurm-wlm + munge (a real one-node SLURM cluster for the cluster tests), chromium
# (the HTML report opened in a headless browser) and mmseqs2 (the homology split's optional
# aligner, `metric: mmseqs`). Without root or apt this prints what is missing
# and the tests that need it skip with a message (CI here runs as root and installs them).
set -uo pipefail
cd "$(dirname "$0")"

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }
if ! have sbatch || ! have slurmctld || ! have munged; then
    missing+=(slurm-wlm munge)
fi
have chromium || missing+=(chromium)
have mmseqs || missing+=(mmseqs2)
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps.sh: not root or no apt-get; missing ${missing[*]} (those tests will skip)" >&2
    exit 0
fi
echo "install_system_deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || { echo "apt-get update failed; those tests will skip" >&2; exit 0; }
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "install_system_deps.sh: apt-get install ${missing[*]} failed; those tests will skip" >&2
exit 0
