#!/usr/bin/env bash
# Vagrant provisioner (runs as root in the VM): installs the packages scripts/_setup.sh needs and
# warms /minikubelet/.venv with the test extra, using the same setup code as scripts/test.
# Also provisions the scripts/vm-test guest disk (in a chroot at build time, MACHINE_NAME "vm"): keep it free of
# Vagrant-only steps.
# Usage: provision.sh MACHINE_NAME
set -euo pipefail
machine="${1:-node1}"

# rsync synced folders may arrive owned by the vagrant user; the scripts run as root anyway.
[ -f /minikubelet/scripts/_setup.sh ] || { echo "provision: /minikubelet is not synced" >&2; exit 1; }

# shellcheck source=/dev/null
. /minikubelet/scripts/_setup.sh
mk_setup test

[ "$machine" = vm ] && { echo "minikubelet: vm-test guest disk provisioned"; exit 0; }
echo "minikubelet: $(hostname -f 2>/dev/null || hostname) is ready. Run the tests with:"
echo "    vagrant ssh $machine -c 'cd /minikubelet && sudo scripts/test'"
echo "(after local edits: vagrant rsync $machine)"
