"""BridgeLM inside DSPy 3.4.1, in-process, with a scripted channel in place of the Rust side."""

import asyncio
import copy

import dspy
import pytest

from dspex_worker import channel
from dspex_worker.bridge_lm import BridgeLM, LmError
from dspex_worker.errors import LmCallFailed
from workerclient import chat_completion


class ScriptedChannel:
    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.parents = []

    def call(self, request, parent=None, on_chunk=None):
        assert on_chunk is None, "no streamify here: BridgeLM does not stream"
        self.requests.append(request)
        self.parents.append(parent)
        result = self.answer(request)
        if isinstance(result, Exception):
            raise result
        return result


@pytest.fixture
def scripted():
    def install(answer):
        fake = ScriptedChannel(answer)
        channel.install(fake)
        return fake

    yield install
    channel.install(None)


def ok(*choices, usage=None):
    return {"choices": list(choices), "model": "served-model",
            "usage": usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


def test_outside_a_worker_the_bridge_says_so():
    channel.install(None)
    with pytest.raises(RuntimeError, match="no bridge channel"):
        BridgeLM("m")("hello")


def test_plain_call_usage_and_history(scripted):
    fake = scripted(lambda r: ok("hi there"))
    lm = BridgeLM("openai/m", temperature=0.2)
    with dspy.context(lm=lm), dspy.track_usage() as tracker:
        assert lm("hello") == ["hi there"]
    assert fake.requests == [{"model": "openai/m", "messages": [{"role": "user", "content": "hello"}],
                              "temperature": 0.2, "extra": {}}]
    assert tracker.get_total_tokens()["openai/m"]["total_tokens"] == 18
    assert lm.history[-1]["usage"]["prompt_tokens"] == 11
    assert lm.history[-1]["response_model"] == "served-model"


def test_dspy_cache_never_answers_for_the_bridge(scripted):
    fake = scripted(lambda r: ok(chat_completion(answer=str(len(fake.requests)))))
    lm = BridgeLM("openai/m", temperature=0.0)  # cache=True by default, like dspy.LM
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        first = predict(question="same")
        second = predict(question="same")
    assert len(fake.requests) == 2
    assert (first.answer, second.answer) == ("1", "2")


def test_n_choices_one_request(scripted):
    fake = scripted(lambda r: ok(*[chat_completion(answer=f"a{i}") for i in range(r["n"])]))
    with dspy.context(lm=BridgeLM("m")):
        prediction = dspy.Predict("question -> answer", n=3)(question="q")
    assert len(fake.requests) == 1 and fake.requests[0]["n"] == 3
    assert [c.answer for c in prediction.completions] == ["a0", "a1", "a2"]


def test_rollout_id_and_cache_false_reach_the_rust_side(scripted):
    fake = scripted(lambda r: ok(chat_completion(answer="x")))
    lm = BridgeLM("m", temperature=0.0).copy(rollout_id=2, temperature=1.0)
    with dspy.context(lm=lm):
        dspy.Predict("question -> answer")(question="q", config={"cache": False, "stop": ["##"]})
    request = fake.requests[0]
    assert request["temperature"] == 1.0 and request["stop"] == ["##"]
    assert request["extra"] == {"rollout_id": 2, "cache": False}


def test_json_adapter_and_response_formats(scripted):
    import pydantic

    fake = scripted(lambda r: ok('{"answer": "j"}'))
    # BridgeLM declares no provider parameters, so JSONAdapter asks for JSON in the prompt only.
    with dspy.context(lm=BridgeLM("m"), adapter=dspy.JSONAdapter()):
        assert dspy.Predict("question -> answer")(question="q").answer == "j"
    assert "response_format" not in fake.requests[0]["extra"]

    class Answer(pydantic.BaseModel):
        answer: str

    # A response_format given explicitly travels as JSON, a pydantic class as its JSON schema.
    BridgeLM("m")("hello", response_format=Answer)
    schema = fake.requests[1]["extra"]["response_format"]
    assert schema["type"] == "json_schema" and schema["json_schema"]["name"] == "Answer"
    assert schema["json_schema"]["schema"]["properties"]["answer"]["type"] == "string"


def test_lm_errors_are_dspy_lm_errors(scripted):
    scripted(lambda r: LmCallFailed("Timeout", "the endpoint took too long"))
    with dspy.context(lm=BridgeLM("m")), pytest.raises(LmError) as info:
        dspy.Predict("question -> answer")(question="q")
    assert isinstance(info.value, dspy.utils.exceptions.LMError)
    assert info.value.remote_type == "Timeout" and "took too long" in str(info.value)


def test_async_calls_and_copies(scripted):
    fake = scripted(lambda r: ok(chat_completion(answer="async")))
    lm = BridgeLM("m")
    predict = dspy.Predict("question -> answer")

    async def run():
        with dspy.context(lm=lm):
            return await predict.acall(question="q")

    assert asyncio.run(run()).answer == "async"
    clone = copy.deepcopy(lm)
    assert isinstance(clone, BridgeLM) and clone is not lm and clone.history == []
    predict.lm = lm
    predict.deepcopy()  # an optimizer's teacher copy: must not fail on the LM
    assert len(fake.requests) == 1


def test_only_chat_model_type():
    with pytest.raises(ValueError, match="chat"):
        BridgeLM("m", model_type="responses")


def test_the_parent_request_reaches_the_threads_dspy_starts(scripted):
    # The worker runs `call` and `optimize` inside dspy.context(dspex_request=<id>); DSPy hands its
    # settings to the threads of Parallel (and Evaluate, and the optimizers), so every LM call
    # names the request it serves.
    fake = scripted(lambda r: ok(chat_completion(answer="x")))
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=BridgeLM("m"), dspex_request=7):
        predict(question="q")
        dspy.Parallel(num_threads=3)([(predict, {"question": str(i)}) for i in range(3)])
    with dspy.context(lm=BridgeLM("m")):
        predict(question="outside an operation")
    assert fake.parents == [7, 7, 7, 7, None]
