"""What dspex's optimizer trace generators (`gen_optimizer_traces.py`, `gen_gepa_traces.py`,
`gen_simba_trace.py`) share: the prompt digest their scripted LMs answer by, and a DummyLM
whose engine — and every copy's, as DSPy copies LMs for rollouts — is the script's."""
import hashlib

from dspy.clients.engines.dummy_engine import AsyncDummyEngine
from dspy.utils.dummies import DummyLM


def digest(messages):
    """SHA-256 over each message's role, \\x01, its content and \\x00, in hex."""
    h = hashlib.sha256()
    for m in messages:
        h.update(m["role"].encode())
        h.update(b"\x01")
        h.update(m["content"].encode())
        h.update(b"\x00")
    return h.hexdigest()


class ScriptedDummyLM(DummyLM):
    """A DummyLM that answers through `ENGINE`, the script's DummyEngine subclass."""

    ENGINE = None

    def __init__(self):
        super().__init__([])
        self._install_engine()

    def _install_engine(self):
        self._engine_spec = self.ENGINE(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def copy(self, **kwargs):
        copied = super().copy(**kwargs)
        copied._install_engine()
        return copied
