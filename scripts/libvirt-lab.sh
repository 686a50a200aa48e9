# shellcheck shell=bash
# libvirt-lab.sh: sourced, not run.  A real libvirtd for a lab of
# scripts/lab.sh, as tests/system/test_libvirt.py runs one: virtlogd and
# libvirtd started inside the lab's host network namespace (libvirtd makes
# the domains' taps where it runs, and they must be ports of the lab's
# bridge), the imds hook installed as /etc/libvirt/hooks/qemu.d/imds through
# a wrapper that exports the lab's settings (libvirt gives hooks a bare
# environment), everything stopped by PID and removed at the end.
#
# The machines have no systemd, and a privileged libvirtd has only the
# system paths (/run/libvirt, /var/lib/libvirt, /etc/libvirt), so a caller
# must refuse to run beside a libvirtd that already runs (lvlab_why_not).
#
#   lvlab_why_not                      prints why libvirt cannot run here; 1 if so
#   lvlab_install_hook HOOK LOADMAP PIN_DIR BRIDGE WORKDIR
#   lvlab_start NETNS WORKDIR          virtlogd, libvirtd; waits until virsh answers
#   lvlab_define NAME XMLFILE          virsh define, remembered for lvlab_cleanup
#   lvlab_tap NAME                     the vnetN of the domain's one interface
#   lvlab_cleanup                      destroy and undefine the domains, stop the
#                                      daemons, remove the hook (never fails)

LVLAB_HOOK_DIR=/etc/libvirt/hooks/qemu.d
LVLAB_HOOK=$LVLAB_HOOK_DIR/imds
LVLAB_QEMU_LOG_DIR=/var/log/libvirt/qemu
lvlab_domains=()
lvlab_pid_files=()
lvlab_hook_installed=

lvlab_virsh() { virsh -q -c qemu:///system "$@"; }

lvlab_why_not() {
	local tool
	for tool in libvirtd virtlogd virsh; do
		if ! command -v "$tool" >/dev/null; then
			echo "$tool is not installed (scripts/install-deps.sh installs libvirt-daemon-system)"
			return 1
		fi
	done
	if pgrep -x libvirtd >/dev/null; then
		echo "a libvirtd already runs on this host: this run needs its own (system paths)"
		return 1
	fi
	return 0
}

lvlab_install_hook() { # HOOK LOADMAP PIN_DIR BRIDGE WORKDIR
	mkdir -p "$LVLAB_HOOK_DIR"
	cat >"$LVLAB_HOOK.tmp" <<EOF
#!/bin/sh
# imds: installed by scripts/libvirt-lab.sh for one run; removed at its end
export IMDS_CONFIG=/dev/null IMDS_LOADMAP='$2' IMDS_PIN_DIR='$3' IMDS_BRIDGES='$4' TMPDIR='$5'
export IMDS_KEY_DIR='${IMDS_KEY_DIR:-}'
[ -n "\$IMDS_KEY_DIR" ] || unset IMDS_KEY_DIR
echo "\$(date +%T.%N) \$*" >>'$5/hook-calls.log'
exec '$1' "\$@"
EOF
	chmod 755 "$LVLAB_HOOK.tmp"
	mv "$LVLAB_HOOK.tmp" "$LVLAB_HOOK"
	lvlab_hook_installed=1
}

# The hook must be in place first: libvirtd looks for hooks when it starts.
lvlab_start() { # NETNS WORKDIR
	local name pid_file i
	for name in virtlogd libvirtd; do
		pid_file=$2/$name.pid
		rm -f "$pid_file"
		nsenter --net="/run/netns/$1" "$name" -d --pid-file "$pid_file" || return 1
		lvlab_pid_files+=("$pid_file")
	done
	for ((i = 0; i < 150; i++)); do
		lvlab_virsh version >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "libvirt-lab: libvirtd did not answer within 30 s" >&2
	return 1
}

lvlab_define() { # NAME XMLFILE
	lvlab_domains+=("$1")
	lvlab_virsh define "$2" >/dev/null
}

lvlab_tap() { # NAME
	lvlab_virsh domiflist "$1" | awk '$1 ~ /^vnet/ {print $1}'
}

lvlab_stop_pid() { # PID-FILE
	local pid i
	[ -s "$1" ] || return 0
	pid=$(cat "$1")
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

lvlab_cleanup() {
	local name suffix i
	for name in "${lvlab_domains[@]}"; do
		lvlab_virsh destroy "$name" >/dev/null 2>&1 || true
		lvlab_virsh undefine "$name" >/dev/null 2>&1 || true
		for suffix in .log .log.0; do
			rm -f "$LVLAB_QEMU_LOG_DIR/$name$suffix"
		done
	done
	lvlab_domains=()
	# libvirtd first: it may still talk to virtlogd while it stops.
	for ((i = ${#lvlab_pid_files[@]} - 1; i >= 0; i--)); do
		lvlab_stop_pid "${lvlab_pid_files[i]}"
	done
	lvlab_pid_files=()
	[ -z "$lvlab_hook_installed" ] || rm -f "$LVLAB_HOOK"
	lvlab_hook_installed=
	return 0
}
