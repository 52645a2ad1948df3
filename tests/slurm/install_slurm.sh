#!/usr/bin/env bash
# Install Debian's SLURM (slurm-wlm) and munge for the one-node test cluster.
#
# For CI and developers running the test suite as root on Debian/Ubuntu. Does nothing when the
# binaries are already there. Needs network access to the apt mirror.
set -euo pipefail

need=(munged munge slurmctld slurmd sbatch squeue sinfo scontrol)
missing=()
for bin in "${need[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || [[ -x /usr/sbin/$bin ]] || missing+=("$bin")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install_slurm.sh: slurm-wlm and munge already installed"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install_slurm.sh: missing ${missing[*]}; installing needs root" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_slurm.sh: missing ${missing[*]} and no apt-get to install slurm-wlm/munge" >&2
    exit 1
fi

echo "install_slurm.sh: missing ${missing[*]}; installing slurm-wlm and munge with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends slurm-wlm munge
