#!/usr/bin/env python
"""What pynetdicom itself costs: the CT sent by dcmtk's storescu to an SCP that answers
every C-STORE with Success and keeps nothing.

Two such SCPs, in this one process, one after the other:
- "stock": pynetdicom's AE as it comes (every storage SOP class, every transfer syntax);
- "lightbox": the receiver's own AE and server (worker/dimse/server.py: shared presentation
  contexts, large reads, the waking association loops, TCP_NODELAY, C-STOREs received and
  answered in the DUL thread by worker/dimse/inline.py), with a C-STORE handler that
  returns at once instead of spooling the file. One process, as LIGHTBOX_DICOM_PROCESSES=1.

The difference between "lightbox" here and bench/dimse.py's acceptance time is what storing
durably and recording cost; "lightbox" here is the fastest the receiver could accept while
it is built on pynetdicom, on this machine.

    .venv/bin/python bench/dimse_floor.py [--source DIR] [--runs N]
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "testdata" / "ct-lidc-0314"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from dimse import free_port, send  # noqa: E402


def stock_server(port: int):
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

    ae = AE(ae_title="LIGHTBOX")
    ae.maximum_pdu_size = 4 << 20
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    handlers = [(evt.EVT_C_STORE, lambda event: 0x0000)]
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)


def lightbox_server(port: int):
    from pynetdicom import evt

    from worker.dimse.server import Server, make_ae

    ae = make_ae()
    handlers = [(evt.EVT_C_STORE, lambda event: 0x0000)]
    server = Server(ae, ("127.0.0.1", port), ae.ae_title, ae.supported_contexts, None, handlers)
    ae._servers.append(server)  # as AE.start_server does, for server.shutdown()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    files = sorted(args.source.glob("*.dcm"))
    if not files:
        sys.exit(f"no .dcm files in {args.source}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    os.environ.setdefault("LIGHTBOX_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from pynetdicom import _config

    _config.LOG_HANDLER_LEVEL = "none"  # as the receiver runs (server.make_ae)

    print(f"\npynetdicom floor — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; ", end="")
    print(f"{len(files)} files from {args.source.name}; C-STORE answered, nothing kept")
    print(f"{'SCP':10} {'assocs':>6} {'accept s':>9} {'accepted/s':>10} {'CPU s':>6}  runs")
    for name, start in (("stock", stock_server), ("lightbox", lightbox_server)):
        port = free_port()
        server = start(port)
        try:
            for associations in (1, 4):
                times, cpu = [], []
                for _ in range(args.runs):
                    used = time.process_time()
                    times.append(send(files, port, "LIGHTBOX", associations))
                    cpu.append(time.process_time() - used)
                accept = statistics.median(times)
                print(
                    f"{name:10} {associations:>6} {accept:>9.2f} {len(files) / accept:>10.1f} "
                    f"{statistics.median(cpu):>6.2f}  {', '.join(f'{t:.2f}' for t in times)}"
                )
        finally:
            server.shutdown()


if __name__ == "__main__":
    main()
