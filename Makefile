# wlbridge developer entry points.  `make test` is the one command CI and new users run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Root is needed for namespaces and OVS; use sudo when we are not root.
SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := openvswitch-switch dnsmasq-base isc-dhcp-client iproute2 iputils-ping ethtool radvd \
                nftables iperf3 tcpdump busybox-static dhcpcd-base \
                mininet python3-networkx python3-pyroute2
# busybox-static: the guests' udhcpc and tools, and the containers' image (below).
# Mininet runs Debian's python3: the topology (topologies/mininet_wifi.py) imports networkx and
# pyroute2 there.  ISC dhcpd for its dhcp=isc; the package would start (and at boot enable) a
# DHCP server, so it is installed as NetworkManager is, with no service started.
NOSTART_APT_PACKAGES := isc-dhcp-server
# NetworkManager for tests/integration/test_addr_handoff_nm.py (which runs it standalone, on a
# private D-Bus, managing the test's interfaces only).  Installed without recommends (no
# ModemManager, ppp, wpasupplicant, dnsmasq-base) and with a policy-rc.d that lets no service
# start while it installs (its packages would start NetworkManager and udev); skipped where
# systemd is the init system: there the package would also enable NetworkManager at boot.
NM_APT_PACKAGES := network-manager
# libvirt for tests/integration/test_libvirt_net.py (`wlbridge setup` defines a libvirt network;
# the test starts its own libvirtd, without systemd): installed like NetworkManager, no service
# started, no recommends.  QEMU (and libvirt's QEMU driver), cpio and kmod for the tiny guest VM
# of test_libvirt_vm.py (a domain on that network) and test_session_bridge.py (QEMU through
# qemu-bridge-helper): topologies.guestvm builds its initramfs with cpio and indexes the kernel
# package's modules with depmod (kmod).
LIBVIRT_APT_PACKAGES := libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu \
                        qemu-system-x86 cpio kmod
# Container runtimes for tests/integration/test_cni.py, test_docker_plugin.py and tests/wifi/
# test_wifi16_containers.py (topologies/runtimes.py; the tests start
# their own dockerd / run podman with private roots and sockets): installed like NetworkManager,
# no service started (docker.io would start dockerd on the default socket), no recommends.
# containernetworking-plugins gives the standard CNI plugins (loopback, dhcp, static) Podman's
# CNI backend needs.  The containers' offline image (`podman import`) is busybox-static, in
# APT_PACKAGES: it conflicts with Debian's `busybox` (the same /bin/busybox, statically linked),
# so only it is installed (both in two lists swapped one for the other on every run).
CONTAINER_APT_PACKAGES := docker.io podman containernetworking-plugins
POLICY_RC := /usr/sbin/policy-rc.d
# The Wi-Fi test bed (a QEMU VM running this machine's root filesystem) also needs these.
WIFI_APT_PACKAGES := qemu-system-x86 hostapd wpasupplicant iw radvd cpio kmod openssl
PYTHON_CANDIDATES := python3 /usr/bin/python3
OVS_CTL := /usr/share/openvswitch/scripts/ovs-ctl
LOCK  := /tmp/.wlbridge-install-$(shell id -u).lock
LINT_PATHS := controller topologies tests
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help install deps wifi-deps ovs test test-wifi unit integration lint demo bench clean \
        check-install

help:
	@echo "make install      Debian packages (if missing) + $(VENV) with wlbridge[test]"
	@echo "make ovs          make sure Open vSwitch (userspace datapath) is running"
	@echo "make test         install + ovs + unit tests + integration tests (root)"
	@echo "make test-wifi    the Wi-Fi suite in a VM: hwsim radios, hostapd, wpa_supplicant (root)"
	@echo "make unit         unit tests (no root)"
	@echo "make integration  integration tests (root, OVS, network namespaces)"
	@echo "make lint         ruff over $(LINT_PATHS)"
	@echo "make check-install  the product install: \`pip install .\` into a throwaway venv, checked"
	@echo "make demo         the emulated Wi-Fi LAN (root): a plain bridge failing there, then wlbridge"
	@echo "make bench        benchmarks (root): throughput, IPv6, DHCP, start, connect, idle, resync, packet-ins"
	@echo "make clean        remove $(VENV) and caches"

install: deps $(STAMP)

# Install only missing packages; apt-get update only when something must be installed.
define apt_install_missing
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
endef

# Like apt_install_missing, without recommends, no service started: a policy-rc.d denying
# every start is put in place for the install and removed after (one already there is kept).
define apt_install_missing_no_start
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ] && [ -d /run/systemd/system ]; then \
	  echo "not installing$$missing: systemd runs here and would start it at boot" \
	       "(its tests skip)"; \
	elif [ -n "$$missing" ]; then \
	  echo "apt-get install --no-install-recommends (no service started):$$missing"; \
	  guard=""; \
	  if [ ! -e $(POLICY_RC) ]; then \
	    printf '#!/bin/sh\n# wlbridge make deps: no service starts while installing\nexit 101\n' \
	      | $(SUDO) tee $(POLICY_RC) >/dev/null && $(SUDO) chmod 755 $(POLICY_RC) && guard=1; \
	  fi; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    --no-install-recommends $$missing; rc=$$?; \
	  if [ -n "$$guard" ]; then $(SUDO) rm -f $(POLICY_RC); fi; \
	  exit $$rc; \
	fi
endef

deps:
	$(call apt_install_missing,$(APT_PACKAGES))
	$(call apt_install_missing_no_start,$(NM_APT_PACKAGES))
	$(call apt_install_missing_no_start,$(LIBVIRT_APT_PACKAGES))
	$(call apt_install_missing_no_start,$(CONTAINER_APT_PACKAGES))
	$(call apt_install_missing_no_start,$(NOSTART_APT_PACKAGES))

wifi-deps:
	$(call apt_install_missing,$(WIFI_APT_PACKAGES))

# The venv is (re)installed when the package metadata changes.  A python3 without a working
# venv/ensurepip (Debian's python3 lacks python3-venv by default) falls back to /usr/bin/python3.
$(STAMP): setup.cfg pyproject.toml
	@exec 9>$(LOCK); flock 9; \
	if ! { [ -x $(PY) ] && $(PY) -c 'import sys' 2>/dev/null; }; then \
	  rm -rf $(VENV); py=""; \
	  for c in $(PYTHON_CANDIDATES); do \
	    if $$c -c 'import venv, ensurepip' 2>/dev/null; then py=$$c; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then \
	    echo "no python3 with venv: installing python3-venv"; \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; \
	    py=/usr/bin/python3; \
	  fi; \
	  echo "creating $(VENV) with $$py ($$($$py --version))"; \
	  $$py -m venv $(VENV); \
	fi; \
	$(PY) -m pip install -q -e '.[test]' && touch $@

ovs:
	@if $(SUDO) ovs-vsctl --timeout=5 show >/dev/null 2>&1; then \
	  echo "Open vSwitch is running"; \
	else \
	  echo "starting Open vSwitch (userspace datapath)"; \
	  $(SUDO) $(OVS_CTL) start --system-id=random || true; \
	  $(SUDO) ovs-vsctl --timeout=5 show >/dev/null || { echo "Open vSwitch did not start" >&2; exit 1; }; \
	fi

test: install ovs
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory integration

# Boots the test bed VM once (kernel cached under /var/cache/wlbridge-wifibed) and runs
# tests/wifi in it.  When the VM cannot start, one line says why: under CI that fails.
test-wifi: install wifi-deps
	$(SUDO) env CI="$${CI:-}" $(PY) -m topologies.wifibed test $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest -q -m "not integration" tests $(PYTEST_ARGS)

integration: install ovs
	$(SUDO) $(PY) -m pytest -q -m integration tests $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)

# The product install (docs/install.md): `pip install .` (no test tools) into a throwaway venv
# from a copy of the sources; then `wlbridge --help`, `wlbridge doctor --help`, the package
# data (units, example config, man page, completion) as `wlbridge install-service` installs
# them into a scratch directory, and no test tool installed.  The venv is removed after.
check-install:
	@d=$$(mktemp -d /tmp/wlbridge-check-install.XXXXXX); trap 'rm -rf "$$d"' EXIT; \
	set -e; mkdir "$$d/src"; \
	cp -r controller topologies setup.cfg pyproject.toml README.md LICENSE "$$d/src/"; \
	find "$$d/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +; \
	py=""; for c in $(PY) $(PYTHON_CANDIDATES); do \
	  if $$c -c 'import venv, ensurepip' 2>/dev/null; then py=$$c; break; fi; done; \
	test -n "$$py" || { echo "check-install: no python3 with venv (make install)" >&2; exit 1; }; \
	$$py -m venv "$$d/venv"; \
	"$$d/venv/bin/pip" install -q --disable-pip-version-check "$$d/src"; \
	w="$$d/venv/bin/wlbridge"; \
	"$$w" --help >/dev/null; "$$w" doctor --help >/dev/null; \
	"$$w" install-service --uplink wlan0 --no-start --unit-dir "$$d/units" \
	  --config "$$d/wlbridge.ini" --prefix "$$d/usr" >/dev/null; \
	for f in units/wlbridge.service units/wlbridge-setup.service wlbridge.ini \
	         usr/share/man/man8/wlbridge.8 usr/share/bash-completion/completions/wlbridge; do \
	  test -s "$$d/$$f" || { echo "check-install: $$f not installed" >&2; exit 1; }; \
	done; \
	test -s "$$("$$w" fleet schema)" || { echo "check-install: fleet schema not installed" >&2; exit 1; }; \
	if "$$d/venv/bin/python" -c 'import pytest' 2>/dev/null; then \
	  echo "check-install: pytest came with the product install" >&2; exit 1; fi; \
	echo "check-install: ok ($$("$$w" --help | head -1))"

# `wlbridge demo`: a plain bridge failing on the emulated Wi-Fi LAN, then wlbridge working.
demo: install ovs
	$(SUDO) $(VENV)/bin/wlbridge demo

bench: install ovs
	$(SUDO) $(PY) bench/bench_throughput.py $(BENCH_ARGS)
	$(SUDO) $(PY) bench/bench_ipv6.py $(BENCH_ARGS)
	$(SUDO) $(PY) bench/bench_dhcp.py $(BENCH_ARGS)
	$(SUDO) $(PY) bench/bench_connect.py $(BENCH_ARGS)
	$(SUDO) $(PY) bench/bench_idle.py $(BENCH_ARGS)
	$(PY) bench/bench_resync.py $(BENCH_ARGS)
	$(PY) bench/bench_packet_in.py $(BENCH_ARGS)
	$(PY) bench/bench_packet_in_live.py $(BENCH_ARGS)
	$(SUDO) $(PY) bench/bench_start.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .tox build dist controller/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
