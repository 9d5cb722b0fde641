"""A real 802.11 test bed: a QEMU VM with mac80211_hwsim, hostapd and wpa_supplicant.

Host side (`image`, `vm`): Debian's kernel package is downloaded once and cached, a busybox
initramfs mounts this machine's root filesystem read-only over 9p with a tmpfs overlay, and
QEMU (software emulation) boots it to run one job, e.g. the pytest suite under tests/wifi.
Results come back through a second, writable 9p share.

Guest side (`bed`): inside the VM, radios from mac80211_hwsim, a WPA2-PSK hostapd AP bridged
to a wired LAN (DHCP server, radvd, a peer), the station associated by wpa_supplicant, and
Open vSwitch on a fresh database with the openvswitch kernel module (the `system` datapath).
"""
