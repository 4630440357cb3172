"""README's main job (``cryodyna example adk`` then ``cryodyna train-atom ... --epochs 10``), timed on
this machine idle and beside a busy process, with the training rate of each.

The busy process is what a second user's job looks like to ours: a torch loop with one thread per
core (matmuls and tanh on a 600 x 600 matrix, never adapting to us), started before our job and
killed after it.  Per condition the script prints the wall time of each command, the training
images/s (``progress.json``), the thread count training chose (the start banner) and any change of
it during training; then the ratio idle / busy of the training rate (the target: at most 2.5 on 2
cores) and the machine's float32 matmul rate measured alone at the start.

``--threads N`` passes ``--set optim.threads=N`` (e.g. the count of cores, to see what the automatic
choice avoids); ``--epochs`` shortens the training.

Example:
    python benchmarks/shared_machine.py                      # the README main job, idle then busy
    python benchmarks/shared_machine.py --epochs 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import matmul_gflops

BUSY = """
import torch, sys
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(600, 600)
while True:
    a = torch.tanh(a @ a)
"""


def timed(command: list[str], log: Path) -> float:
    """Run ``command`` (output to ``log``); its wall time in seconds.  Fails loudly when it fails."""
    start = time.perf_counter()
    with log.open("w") as out:
        r = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if r.returncode:
        sys.exit(f"{' '.join(command)} failed (exit {r.returncode}); see {log}")
    return time.perf_counter() - start


def main_job(folder: Path, epochs: int, threads: int | None) -> dict:
    """The README main job in ``folder``; wall times, rate and thread choices."""
    example = timed(["cryodyna", "example", "adk", "-o", str(folder / "adk_example")], folder / "example.log")
    command = ["cryodyna", "train-atom", str(folder / "adk_example/particles.star"),
               str(folder / "adk_example/reference.pdb"), "-o", str(folder / "adk_example/run"), "--epochs", str(epochs)]
    if threads:
        command += ["--set", f"optim.threads={threads}"]
    train = timed(command, folder / "train.log")
    log = (folder / "train.log").read_text()
    progress = json.loads((folder / "adk_example/run/progress.json").read_text())
    chosen = re.search(r"\((\d+) CPU threads: ([^)]*)\)", log.replace("\n", " "))
    changes = re.findall(r"CPU threads (\d+ -> \d+)", log)
    return {"example_s": example, "train_s": train, "images_per_s": progress["images_per_s"],
            "threads": f"{chosen.group(1)} ({chosen.group(2)})" if chosen else "?", "changes": changes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="fixed optim.threads (default: automatic)")
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores, float32 matmul {matmul_gflops():.0f} GFLOP/s (measured alone, now)")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for condition in ("idle", "busy"):
            folder = Path(tmp) / condition
            folder.mkdir()
            busy = None
            if condition == "busy":
                busy = subprocess.Popen([sys.executable, "-c", BUSY, str(cores)])
                time.sleep(2)
            try:
                results[condition] = r = main_job(folder, args.epochs, args.threads)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            print(f"{condition:5s} example {r['example_s']:5.1f} s, train-atom --epochs {args.epochs} {r['train_s']:6.1f} s "
                  f"(total {r['example_s'] + r['train_s']:6.1f} s), {r['images_per_s']:6.1f} images/s, threads "
                  f"{r['threads']}, changed during training: {', '.join(r['changes']) or 'no'}", flush=True)
    ratio = results["idle"]["images_per_s"] / results["busy"]["images_per_s"]
    print(f"idle / busy training rate: {ratio:.2f} (target <= 2.5 on 2 cores)")


if __name__ == "__main__":
    main()
