"""How the test bed's AP and station authenticate: WPA2-PSK (the default), WPA2-Enterprise
with hostapd's internal EAP server (PEAP/MSCHAPv2 or EAP-TLS, certificates made for the run
with openssl), or WPA3-SAE with management frame protection required.

Each mode is the hostapd settings and the wpa_supplicant network block for it; `Bed` writes
them (`Bed.use_security` switches the AP and the station to another mode in the same VM).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

PASSPHRASE = "wf-secret-passphrase"
#: hostapd's EAP server reauthenticates the station this often (seconds): short enough to
#: happen while a test module's traffic checks run.
EAP_REAUTH_PERIOD = 30
PEAP_USER, PEAP_PASSWORD = "wf-user", "wf-eap-password"
TLS_USER = "wf-tls-client"
#: hostapd's user database: EAP-TLS for the client certificate's identity, PEAP for anyone
#: else in phase 1, then MSCHAPv2 for the one user in phase 2.
EAP_USERS = (f'"{TLS_USER}" TLS\n'
             '* PEAP\n'
             f'"{PEAP_USER}" MSCHAPV2 "{PEAP_PASSWORD}" [2]\n')
MODES = ("psk", "peap", "tls", "sae")


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(folder: Path) -> Certs:
    """A CA, a server and a client certificate (EC P-256, valid for a day), made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    c = Certs(*(folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                     "client.key")))
    if c.client_key.exists():
        return c

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ca_key = folder / "ca.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(ca_key), "-out", str(c.ca), "-days", "2", "-subj", "/CN=wf-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for cert, key, cn, usage in ((c.server_cert, c.server_key, "wf-radius", "serverAuth"),
                                 (c.client_cert, c.client_key, TLS_USER, "clientAuth")):
        csr = folder / f"{cn}.csr"
        ext = folder / f"{cn}.ext"
        ext.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(c.ca), "-CAkey", str(ca_key),
                "-CAcreateserial", "-out", str(cert), "-days", "1", "-sha256",
                "-extfile", str(ext))
    return c


def hostapd_settings(mode: str, folder: Path) -> dict[str, str]:
    """hostapd.conf lines for `mode` (files it needs are written under `folder`)."""
    if mode == "psk":
        return {"wpa": "2", "wpa_key_mgmt": "WPA-PSK", "rsn_pairwise": "CCMP",
                "wpa_passphrase": PASSPHRASE}
    if mode == "sae":
        return {"wpa": "2", "wpa_key_mgmt": "SAE", "rsn_pairwise": "CCMP",
                "sae_password": PASSPHRASE, "ieee80211w": "2"}
    if mode in ("peap", "tls"):
        certs = make_certs(folder / "certs")
        users = folder / "hostapd.eap_user"
        users.write_text(EAP_USERS)
        return {"wpa": "2", "wpa_key_mgmt": "WPA-EAP", "rsn_pairwise": "CCMP",
                "ieee8021x": "1", "eapol_version": "2", "eap_server": "1",
                "eap_user_file": str(users), "ca_cert": str(certs.ca),
                "server_cert": str(certs.server_cert), "private_key": str(certs.server_key),
                "eap_reauth_period": str(EAP_REAUTH_PERIOD)}
    raise ValueError(f"unknown security mode {mode!r} (one of {', '.join(MODES)})")


def supplicant_network(mode: str, folder: Path) -> list[str]:
    """The lines of wpa_supplicant's network block for `mode` (besides ssid and scan_freq)."""
    if mode == "psk":
        return [f'psk="{PASSPHRASE}"', "key_mgmt=WPA-PSK", "proto=RSN", "pairwise=CCMP",
                "group=CCMP"]
    if mode == "sae":
        return [f'sae_password="{PASSPHRASE}"', "key_mgmt=SAE", "ieee80211w=2", "proto=RSN",
                "pairwise=CCMP", "group=CCMP"]
    certs = make_certs(folder / "certs")
    common = ["key_mgmt=WPA-EAP", "proto=RSN", "pairwise=CCMP", "group=CCMP",
              f'ca_cert="{certs.ca}"']
    if mode == "peap":
        return [*common, "eap=PEAP", f'identity="{PEAP_USER}"', 'anonymous_identity="anon"',
                f'password="{PEAP_PASSWORD}"', 'phase2="auth=MSCHAPV2"']
    if mode == "tls":
        return [*common, "eap=TLS", f'identity="{TLS_USER}"',
                f'client_cert="{certs.client_cert}"', f'private_key="{certs.client_key}"']
    raise ValueError(f"unknown security mode {mode!r} (one of {', '.join(MODES)})")
