# Vagrant with the libvirt provider on this machine, for hack/vagrant-*. Sourced after common.sh.
# shellcheck shell=bash

VAGRANT_DIR="$ROOT/examples/vagrant"
# Everything Vagrant keeps (boxes, plugins' state) and the VMs' CAPBM key stay in the cache.
export VAGRANT_HOME="$CACHE/vagrant/home"
export VAGRANT_DOTFILE_PATH="$CACHE/vagrant/machines"
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1
export CAPBM_SSH_KEY="$CACHE/vagrant/id_ed25519"
export CAPBM_BOX=capbm-lab CAPBM_PROVIDER=libvirt
# Settings for this machine: QEMU in software (its KVM hangs guest kernels), small VMs.
export CAPBM_EMULATE="${CAPBM_EMULATE:-1}" CAPBM_VMS="${CAPBM_VMS:-2}" CAPBM_MEMORY="${CAPBM_MEMORY:-2048}" CAPBM_CPUS="${CAPBM_CPUS:-2}"
export CAPBM_NETWORK="${CAPBM_NETWORK:-10.250.160}"
# Each VM's serial console (kernel and boot messages), for when a VM does not come up.
export CAPBM_SERIAL_LOGS="${CAPBM_SERIAL_LOGS:-/var/log/capbm-vagrant}"
mkdir -p "$CAPBM_SERIAL_LOGS" 2>/dev/null || true

# libvirt_ready: the Debian packages, and libvirtd + virtlogd running (started here when this
# machine has no systemd). Idempotent.
libvirt_ready() {
  need_root libvirt_ready
  apt_install vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base
  if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    step "starting libvirtd"
    pgrep -x virtlogd >/dev/null || virtlogd -d || die "virtlogd did not start" "run: virtlogd -d, and read its error"
    pgrep -x libvirtd >/dev/null || libvirtd -d || die "libvirtd did not start" "run: libvirtd -d, and read its error"
    local i
    for i in $(seq 1 30); do
      virsh -c qemu:///system version >/dev/null 2>&1 && return 0
      sleep 1
    done
    die "libvirtd does not answer on qemu:///system after 30 s" "read /var/log/libvirt/libvirtd.log, or run: virsh -c qemu:///system version"
  fi
}

# vagrant_box_ready: the capbm-lab box built (hack/vagrant-box) and added to Vagrant (once per build).
vagrant_box_ready() {
  local box stamp
  box="$("$ROOT/hack/vagrant-box" build)" || die "building the Vagrant box failed (output above)"
  stamp="$VAGRANT_HOME/capbm-lab.added"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$box" ]; then
    step "adding the box capbm-lab to Vagrant"
    vagrant box add --force --name capbm-lab "$box" >/dev/null || die "vagrant box add failed" "run: VAGRANT_HOME=$VAGRANT_HOME vagrant box add --force --name capbm-lab $box"
    # The old box's volume in libvirt's pool is stale once the box changes.
    local v
    for v in $(virsh -c qemu:///system vol-list default 2>/dev/null | awk '$1 ~ /^capbm-lab_vagrant_box_image_/ {print $1}'); do
      virsh -c qemu:///system vol-delete --pool default "$v" >/dev/null 2>&1 || true
    done
    echo "$box" >"$stamp"
  fi
}

# vagrant_run ARGS...: vagrant in examples/vagrant with this machine's settings.
vagrant_run() { (cd "$VAGRANT_DIR" && vagrant "$@"); }
