"""python -m topologies.wifibed {prepare,test,run}: the Wi-Fi test bed VM.

* ``prepare``: fetch and cache the kernel, build the initramfs.
* ``test [PYTEST_ARGS...]``: boot the VM and run the pytest suite under tests/wifi in it.
* ``run COMMAND``: boot the VM and run a shell command in it (as root, in this directory).

When the VM cannot start here, one line says why; the exit status is then 2 under CI
(CI=true) and 0 elsewhere (the suite is skipped, not passed: the line says so).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from . import image, vm

SUITE = "tests/wifi"
#: Set in the VM: tests/wifi is collected only there.
IN_BED_ENV = "WLBRIDGE_WIFIBED"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def cannot(reason: str) -> int:
    if in_ci():
        print(f"wifibed: FAIL: the VM cannot start: {reason}", file=sys.stderr)
        return 2
    print(f"wifibed: SKIPPED: the VM cannot start: {reason}", file=sys.stderr)
    return 0


def boot(commands: str, args: argparse.Namespace) -> int:
    problem = vm.problem()
    if problem:
        return cannot(problem)
    try:
        img = image.prepare(Path(args.cache))
    except (image.ImageError, OSError) as exc:
        return cannot(str(exc))
    cwd = os.getcwd()
    env = {IN_BED_ENV: "1", "WLBRIDGE_WIFIBED_OUT": image.OUT_MOUNT,
           "PYTHONPATH": os.environ.get("PYTHONPATH", f"{cwd}/controller:{cwd}"),
           "CI": os.environ.get("CI", "")}
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="wf-wifibed-"))
    started = time.monotonic()
    rc = vm.run(img, out, vm.guest_job(commands, env, cwd), timeout=args.timeout)
    took = time.monotonic() - started
    measured = out / "measurements.jsonl"
    if measured.exists():
        print("wifibed: measured:\n" + measured.read_text().rstrip(), file=sys.stderr)
    what = {97: f"the VM could not enter {cwd}", 124: "timed out",
            125: "the VM stopped without a job status"}.get(rc, f"rc={rc}")
    print(f"wifibed: {what} after {took:.0f} s (kernel {img.version}); logs in {out}",
          file=sys.stderr)
    return rc if rc < 124 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.wifibed", description=__doc__.split("\n")[0])
    p.add_argument("--cache", default=str(image.DEFAULT_CACHE), help="download cache")
    p.add_argument("--out", help="results directory (default: a new one under /tmp)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds the VM may run")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="fetch the kernel and build the initramfs")
    sub.add_parser("test", help=f"run {SUITE} in the VM (other arguments go to pytest)")
    r = sub.add_parser("run", help="run a shell command in the VM")
    r.add_argument("command")
    args, rest = p.parse_known_args(argv)
    if rest and args.cmd != "test":
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.cmd == "prepare":
        try:
            img = image.prepare(Path(args.cache))
        except (image.ImageError, OSError) as exc:
            print(f"wifibed: {exc}", file=sys.stderr)
            return 2
        print(f"kernel {img.version}: {img.vmlinuz}\ninitramfs: {img.initrd}")
        return 0
    if args.cmd == "run":
        return boot(args.command, args)
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--color=no", "-rfE", SUITE, *rest]
    return boot(shlex.join(pytest), args)


if __name__ == "__main__":
    sys.exit(main())
