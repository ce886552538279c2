import os
import sys

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # python/: dspex_worker
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/: workerclient

from workerclient import WorkerClient  # noqa: E402


@pytest.fixture
def worker():
    """A fresh worker with lazy `import dspy`."""
    client = WorkerClient()
    yield client
    client.close()


@pytest.fixture
def bridged():
    """A fresh worker (eager import) configured with a bridge-mode LM."""
    client = WorkerClient("--eager-import")
    client.call("configure", lm={"mode": "bridge", "model": "openai/bridge-test"}, adapter="chat")
    yield client
    client.close()
