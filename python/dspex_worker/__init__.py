"""dspex-worker: the Python side of dspex's bridge.

One worker is one OS process (`python -m dspex_worker`) that reads length-prefixed JSON frames on
stdin and answers on stdout, running DSPy modules for a Rust process pool. The contract is
`python/PROTOCOL.md` in the dspex repository. Importing this package imports only the standard
library; DSPy is imported on first use (or before `ready` with `--eager-import`).
"""

PROTOCOL_VERSION = 1
__version__ = "0.1.0"
