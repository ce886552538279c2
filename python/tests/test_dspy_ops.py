"""configure / create / call / save_state / load_state / optimize / cancel with real DSPy 3.4.1 modules,
every LM completion answered by the test over lm_call frames."""

import re
import time

import pytest

from workerclient import chat_completion


def _question(request):
    """The question of the last user message of a ChatAdapter prompt."""
    user = [m for m in request["messages"] if m["role"] == "user"][-1]["content"]
    return re.search(r"\[\[ ## question ## \]\]\n(.*?)\n\n", user, re.S).group(1)


ARITHMETIC = {"What is 1 + 1?": "2", "What is 2 + 3?": "5", "What is 4 + 4?": "8", "What is 10 + 5?": "15"}


def arithmetic_lm(request):
    question = _question(request)
    return [chat_completion(reasoning=f"Adding the numbers in: {question}", answer=ARITHMETIC.get(question, "0"))]


def test_chain_of_thought_through_the_bridge(bridged):
    created = bridged.call("create", module="ChainOfThought", signature="question -> answer", session="s1")
    assert created == {"object": "o1"}
    seen = []

    def lm(request):
        seen.append(request)
        return [chat_completion(reasoning="Two and two make four.", answer="4")]

    call = bridged.request("call", object="o1", inputs={"question": "What is 2 + 2?"})
    result = bridged.response(call, on_lm=lm)["ok"]
    assert result == {"outputs": {"reasoning": "Two and two make four.", "answer": "4"}}
    assert len(seen) == 1
    assert bridged.lm_calls[0]["parent"] == call
    request = seen[0]
    assert request["model"] == "openai/bridge-test"
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert "`reasoning`" in request["messages"][0]["content"]
    assert "[[ ## question ## ]]\nWhat is 2 + 2?" in request["messages"][1]["content"]
    assert request["extra"] == {}


def test_lm_kwargs_and_n_choices_travel_in_the_lm_call(bridged):
    bridged.call("configure", lm={"mode": "bridge", "model": "openai/other",
                                  "kwargs": {"temperature": 0.0, "max_tokens": 321, "top_p": 0.9}})
    bridged.call("create", module="Predict", signature="question -> answer")
    seen = []

    def lm(request):
        seen.append(request)
        return [chat_completion(answer=str(i)) for i in range(request.get("n", 1))]

    out = bridged.call("call", object="o1", inputs={"question": "q?", "config": {"n": 3, "stop": "END"}}, on_lm=lm)
    assert out == {"outputs": {"answer": "0"}}  # the prediction's fields are the first completion's
    request = seen[0]
    # DSPy's Predict raises a low temperature to 0.7 when n > 1.
    assert (request["model"], request["n"], request["temperature"], request["max_tokens"]) == ("openai/other", 3, 0.7, 321)
    assert request["stop"] == ["END"]
    assert request["extra"] == {"top_p": 0.9}


def test_identical_calls_are_not_served_by_dspy_cache(bridged):
    bridged.call("create", module="Predict", signature="question -> answer")
    count = []

    def lm(request):
        count.append(1)
        return [chat_completion(answer=str(len(count)))]

    first = bridged.call("call", object="o1", inputs={"question": "same"}, on_lm=lm)
    second = bridged.call("call", object="o1", inputs={"question": "same"}, on_lm=lm)
    assert len(count) == 2
    assert (first["outputs"]["answer"], second["outputs"]["answer"]) == ("1", "2")


def test_ping_is_answered_while_a_call_waits_for_its_lm(bridged):
    bridged.call("create", module="Predict", signature="question -> answer")
    call_id = bridged.request("call", object="o1", inputs={"question": "slow?"})
    lm_call = bridged.wait_for(lambda f: f.get("kind") == "lm_call")
    started = time.monotonic()
    pong = bridged.call("ping")
    assert pong["busy"] is True
    assert time.monotonic() - started < 1.0
    # Another executor op queues behind the busy one; ping does not.
    save_id = bridged.request("save_state", object="o1")
    assert bridged.call("ping")["busy"] is True
    bridged.answer_lm_call(lm_call, [chat_completion(answer="late")])
    assert bridged.response(call_id)["ok"] == {"outputs": {"answer": "late"}}
    assert "state" in bridged.response(save_id)["ok"]
    assert bridged.call("ping")["busy"] is False


def test_exceptions_in_calls_are_structured_errors(bridged):
    bridged.call("create", module="Predict", signature="question -> answer")
    # The Rust LM layer fails the completion.
    error = bridged.error("call", object="o1", inputs={"question": "q"},
                          on_lm=lambda r: {"error": {"type": "RateLimited", "message": "slow down"}})
    assert error["type"] == "LmError" and "slow down" in error["message"]
    # A completion no adapter can parse (ChatAdapter, then DSPy's JSONAdapter fallback).
    calls = []

    def garbage(request):
        calls.append(request)
        return ["this is not in any format"]

    error = bridged.error("call", object="o1", inputs={"question": "q"}, on_lm=garbage)
    assert error["type"] == "AdapterParseError", error
    assert len(calls) == 2
    # Inputs the module rejects.
    error = bridged.error("call", object="o1", inputs={"question": "q"}, on_lm=lambda r: {"choices": []})
    assert error["type"] == "LmError"
    assert bridged.call("ping")["pong"] is True


def test_call_without_a_configured_lm(worker):
    worker.call("create", module="Predict", signature="question -> answer")
    error = worker.error("call", object="o1", inputs={"question": "q"})
    assert error["type"] == "ValueError" and "No LM is loaded" in error["message"]


def test_save_state_load_state_round_trip(bridged):
    bridged.call("create", module="ChainOfThought", signature="question -> answer")
    bridged.call("create", module="ChainOfThought", signature="question -> answer")
    state = bridged.call("save_state", object="o1")["state"]
    assert state["predict"]["demos"] == []
    state["predict"]["demos"] = [{"question": "What is 7 + 7?", "reasoning": "Seven twice.", "answer": "14"}]
    state["predict"]["signature"]["instructions"] = "Answer arithmetic questions."
    assert bridged.call("load_state", object="o2", state=state) == {}
    assert bridged.call("save_state", object="o2")["state"] == state
    assert bridged.call("save_state", object="o1")["state"]["predict"]["demos"] == []
    # The loaded demo and instructions are in the next prompt.
    seen = []

    def lm(request):
        seen.append(request)
        return [chat_completion(reasoning="r", answer="a")]

    bridged.call("call", object="o2", inputs={"question": "What is 1 + 1?"}, on_lm=lm)
    prompt = "\n".join(m["content"] for m in seen[0]["messages"])
    assert "What is 7 + 7?" in prompt and "Answer arithmetic questions." in prompt
    assert bridged.error("load_state", object="o2", state={"nope": 1})["type"] == "KeyError"
    assert bridged.call("drop", object="o2") == {}
    assert bridged.error("call", object="o2", inputs={})["type"] == "UnknownObject"


def test_optimize_with_bootstrap_few_shot(bridged):
    bridged.call("create", module="ChainOfThought", signature="question -> answer")
    trainset = [{"question": q, "answer": a} for q, a in list(ARITHMETIC.items())[:3]]
    result = bridged.call("optimize", object="o1", optimizer="BootstrapFewShot",
                          kwargs={"max_bootstrapped_demos": 2, "max_labeled_demos": 0},
                          trainset=trainset, input_keys=["question"], metric="exact_match", on_lm=arithmetic_lm)
    demos = result["state"]["predict"]["demos"]
    assert len(demos) == 2
    assert all(d["augmented"] and d["answer"] == ARITHMETIC[d["question"]] for d in demos)
    assert all(d["reasoning"].startswith("Adding the numbers") for d in demos)
    # The object was replaced by the compiled program: its state and its prompts carry the demos.
    assert bridged.call("save_state", object="o1")["state"] == result["state"]
    seen = []

    def lm(request):
        seen.append(request)
        return arithmetic_lm(request)

    out = bridged.call("call", object="o1", inputs={"question": "What is 10 + 5?"}, on_lm=lm)
    assert out["outputs"]["answer"] == "15"
    assert len(seen[0]["messages"]) == 2 + 2 * len(demos)


def test_optimize_with_a_dspy_metric_and_errors(bridged):
    bridged.call("create", module="Predict", signature="question -> answer")
    trainset = [{"question": q, "answer": a} for q, a in ARITHMETIC.items()]

    def lm(request):
        return [chat_completion(answer=ARITHMETIC.get(_question(request), "0"))]

    result = bridged.call("optimize", object="o1", optimizer="LabeledFewShot", kwargs={"k": 2},
                          trainset=trainset, input_keys=["question"], on_lm=lm)
    assert len(result["state"]["demos"]) == 2
    result = bridged.call("optimize", object="o1", optimizer="BootstrapFewShot",
                          kwargs={"max_bootstrapped_demos": 1, "max_labeled_demos": 0},
                          trainset=trainset, input_keys=["question"], metric="answer_exact_match", on_lm=lm)
    assert len(result["state"]["demos"]) == 1
    assert bridged.error("optimize", object="o1", optimizer="NoSuchOptimizer", trainset=trainset,
                         input_keys=["question"], metric="exact_match")["type"] == "BadRequest"
    assert bridged.error("optimize", object="o1", optimizer="BootstrapFewShot", trainset=trainset,
                         input_keys=["question"], metric="no_such_metric")["type"] == "BadRequest"
    assert bridged.error("optimize", object="o1", optimizer="BootstrapFewShot", trainset=trainset,
                         input_keys=[], metric="exact_match")["type"] == "BadRequest"
    assert bridged.error("optimize", object="o1", optimizer="LabeledFewShot", trainset=trainset,
                         input_keys=["question"], metric="exact_match")["type"] == "BadRequest"


def test_react_with_an_imported_tool_keeps_stdout_clean(bridged):
    bridged.call("create", module="ReAct", signature="question -> answer",
                 kwargs={"tools": ["worker_tools:noisy_add"], "max_iters": 3})
    steps = iter([
        chat_completion(next_thought="I should add.", next_tool_name="noisy_add", next_tool_args='{"a": 2, "b": 3}'),
        chat_completion(next_thought="Done.", next_tool_name="finish", next_tool_args="{}"),
        chat_completion(reasoning="The tool said 5.", answer="5"),
    ])
    seen = []

    def lm(request):
        seen.append(request)
        return [next(steps)]

    out = bridged.call("call", object="o1", inputs={"question": "What is 2 + 3?"}, on_lm=lm)
    assert out["outputs"]["answer"] == "5"
    assert out["outputs"]["trajectory"]["observation_0"] == 5
    assert len(seen) == 3
    # What the tool printed went to stderr; the frames above parsed, so stdout held frames only.
    log = bridged.stderr_text()
    assert "noisy_add was called" in log and "noisy_add wrote to fd 1" in log


def test_cancel_a_call_waiting_for_its_lm_and_a_queued_request(bridged):
    bridged.call("create", module="Predict", signature="question -> answer")
    running = bridged.request("call", object="o1", inputs={"question": "q"})
    bridged.wait_for(lambda f: f.get("kind") == "lm_call")
    queued = bridged.request("call", object="o1", inputs={"question": "q2"})
    assert bridged.call("cancel", target=queued) == {"cancelled": True}
    assert bridged.response(queued)["error"]["type"] == "Cancelled"
    assert bridged.call("cancel", target=running) == {"cancelled": True}
    assert bridged.response(running)["error"]["type"] == "Cancelled"
    # The late lm_result of the cancelled call is dropped; the worker carries on.
    bridged.send({"kind": "lm_result", "id": 1, "ok": {"choices": [chat_completion(answer="late")]}})
    out = bridged.call("call", object="o1", inputs={"question": "again"}, on_lm=lambda r: [chat_completion(answer="ok")])
    assert out == {"outputs": {"answer": "ok"}}
    assert bridged.call("ping")["busy"] is False


def test_direct_mode_calls_the_endpoint_itself(worker):
    # Loopback port 9 refuses connections: the worker's own dspy.LM fails, as a structured error.
    worker.call("configure", lm={"mode": "direct", "model": "openai/x", "api_base": "http://127.0.0.1:9/v1",
                                 "api_key": "k", "kwargs": {"num_retries": 0}})
    worker.call("create", module="Predict", signature="question -> answer")
    error = worker.error("call", object="o1", inputs={"question": "q"})
    assert error["type"] == "LMTransportError" and "127.0.0.1:9" in error["message"]
    assert worker.backlog == []  # no lm_call: direct mode does not use the bridge


def generic_lm(request):
    """Fill every output field the system prompt names: answers "0", other fields a short text."""
    system = request["messages"][0]["content"]
    outputs = system.split("Your output fields are:")[1].split("All interactions")[0]
    names = re.findall(r"\d+\. `(\w+)`", outputs)
    return [chat_completion(**{n: ("0" if n == "answer" else "Be precise.") for n in names})
            for _ in range(request.get("n", 1))]


@pytest.mark.parametrize("optimizer,kwargs,compile_kwargs", [
    ("GEPA", {"max_metric_calls": 12}, {"valset": "rows"}),
    ("SIMBA", {"bsize": 2, "num_candidates": 2, "max_steps": 1, "num_threads": 2}, {}),
    ("MIPROv2", {"auto": None, "num_candidates": 2, "num_threads": 2},
     {"num_trials": 2, "minibatch": False, "valset": "rows"}),
    ("COPRO", {"breadth": 2, "depth": 1}, {"eval_kwargs": {"num_threads": 1}}),
])
def test_optimizers_dspex_lacks_run_through_the_bridge(bridged, optimizer, kwargs, compile_kwargs):
    """The glue only (metric shape, reflection LM default, valset rows, thread pools calling the LM):
    the scripted LM gives the optimizers nothing to improve on."""
    bridged.call("create", module="ChainOfThought", signature="question -> answer")
    rows = [{"question": f"q{i}", "answer": str(i % 2)} for i in range(6)]
    compile_kwargs = {k: rows if v == "rows" else v for k, v in compile_kwargs.items()}
    optimize = bridged.request("optimize", object="o1", optimizer=optimizer, kwargs=kwargs,
                               compile_kwargs=compile_kwargs, trainset=rows, input_keys=["question"],
                               metric="exact_match")
    result = bridged.response(optimize, on_lm=generic_lm, timeout=60)["ok"]
    assert "predict" in result["state"]
    # Every LM call, from whichever of the optimizer's threads, names the optimize request.
    assert bridged.lm_calls and {f["parent"] for f in bridged.lm_calls} == {optimize}
    assert bridged.call("call", object="o1", inputs={"question": "q9"}, on_lm=generic_lm)["outputs"]["answer"] == "0"


def test_create_with_instructions(bridged):
    instructions = "Answer with the number only.\n\nNo words."
    bridged.call("create", module="ChainOfThought", signature="question: str -> answer: int",
                 instructions=instructions)
    state = bridged.call("save_state", object="o1")["state"]
    assert state["predict"]["signature"]["instructions"] == instructions
    seen = []

    def lm(request):
        seen.append(request)
        return [chat_completion(reasoning="Sum.", answer="4")]

    out = bridged.call("call", object="o1", inputs={"question": "2 + 2?"}, on_lm=lm)
    assert out["outputs"]["answer"] == 4
    assert "Answer with the number only." in seen[0]["messages"][0]["content"]  # DSPy indents it
    # Without instructions DSPy writes its default ones; instructions without a signature are refused.
    bridged.call("create", module="Predict", signature="question -> answer")
    default = bridged.call("save_state", object="o2")["state"]["signature"]["instructions"]
    assert default == "Given the fields `question`, produce the fields `answer`."
    assert bridged.error("create", module="Predict", instructions="Be brief.")["type"] == "BadRequest"
    assert bridged.error("create", module="Predict", signature="a -> b", instructions=5)["type"] == "BadRequest"


def test_create_with_field_descriptions_and_prefixes(bridged):
    bridged.call("create", module="Predict", signature="question -> answer",
                 fields={"answer": {"desc": "a number, digits only", "prefix": "Result:"},
                         "question": {"desc": "an arithmetic question"}})
    fields = bridged.call("save_state", object="o1")["state"]["signature"]["fields"]
    assert fields == [
        {"prefix": "Question:", "description": "an arithmetic question"},
        {"prefix": "Result:", "description": "a number, digits only"},
    ]
    seen = []

    def lm(request):
        seen.append(request)
        return [chat_completion(answer="4")]

    bridged.call("call", object="o1", inputs={"question": "2 + 2?"}, on_lm=lm)
    system = seen[0]["messages"][0]["content"]
    assert "a number, digits only" in system and "an arithmetic question" in system
    # Without instructions, DSPy's default ones stay.
    state = bridged.call("save_state", object="o1")["state"]
    assert state["signature"]["instructions"] == "Given the fields `question`, produce the fields `answer`."
    for bad in [
        {"fields": {"answer": {"desc": "x"}}},  # no signature
        {"signature": "a -> b", "fields": {"c": {"desc": "x"}}},  # no such field
        {"signature": "a -> b", "fields": {"b": {"type": "int"}}},  # unknown key
        {"signature": "a -> b", "fields": {"b": {"desc": 5}}},  # not a string
        {"signature": "a -> b", "fields": {"b": "x"}},  # not an object
        {"signature": "a -> b", "fields": ["b"]},  # not an object at all
    ]:
        assert bridged.error("create", module="Predict", **bad)["type"] == "BadRequest", bad


def test_program_of_thought_with_an_imported_interpreter_factory(bridged):
    bridged.call("create", module="ProgramOfThought", signature="question -> answer",
                 kwargs={"interpreter_factory": "dspex_worker.exec_interpreter:ExecInterpreter"})
    steps = iter([
        chat_completion(reasoning="Multiply.", generated_code='```python\nSUBMIT({"answer": 6 * 7})\n```'),
        chat_completion(reasoning="The code printed 42.", answer="42"),
    ])
    seen = []

    def lm(request):
        seen.append(request)
        return [next(steps)]

    out = bridged.call("call", object="o1", inputs={"question": "What is 6 * 7?"}, on_lm=lm)
    assert out["outputs"]["answer"] == "42"
    # The code ran in the imported interpreter: its output reached the answer step.
    user = [m for m in seen[1]["messages"] if m["role"] == "user"][-1]["content"]
    assert '[[ ## code_output ## ]]\n{"answer": 42}' in user
    assert bridged.error("create", module="ProgramOfThought", signature="question -> answer",
                         kwargs={"interpreter_factory": "worker_tools"})["type"] == "BadRequest"


def test_close_session_drops_only_that_sessions_objects(worker):
    worker.call("create", module="Predict", signature="question -> answer", session="s1")
    worker.call("create", module="Predict", signature="question -> answer", session="s2")
    worker.call("create", module="ChainOfThought", signature="question -> answer", session="s1")
    worker.call("create", module="Predict", signature="question -> answer")
    assert worker.call("close_session", session="s1") == {"dropped": 2}
    assert worker.error("save_state", object="o1")["type"] == "UnknownObject"
    assert worker.error("save_state", object="o3")["type"] == "UnknownObject"
    assert "state" in worker.call("save_state", object="o2")
    assert "state" in worker.call("save_state", object="o4")
    # Closing again, or a session the worker never saw, drops nothing.
    assert worker.call("close_session", session="s1") == {"dropped": 0}
    assert worker.error("close_session")["type"] == "BadRequest"


def test_the_code_a_call_runs_reads_its_sessions_state(bridged):
    bridged.call("create", module="ProgramOfThought", signature="question -> answer",
                 kwargs={"interpreter_factory": "dspex_worker.exec_interpreter:ExecInterpreter"})
    code = ('```python\nimport dspex_worker\nstate = dspex_worker.session_state()\n'
            'SUBMIT({"answer": state.get("user", "nobody")})\n```')
    seen = []

    def lm(request):
        seen.append(request)
        if len(seen) % 2:
            return [chat_completion(reasoning="Read the state.", generated_code=code)]
        return [chat_completion(reasoning="Done.", answer="ok")]

    def code_output(turn):
        user = [m for m in seen[2 * turn + 1]["messages"] if m["role"] == "user"][-1]["content"]
        return user.split("[[ ## code_output ## ]]\n", 1)[1].split("\n", 1)[0]

    bridged.call("call", object="o1", inputs={"question": "Who?"}, session_state={"user": "ada"}, on_lm=lm)
    assert code_output(0) == '{"answer": "ada"}'
    # Without a state, and outside any call, the state is empty.
    bridged.call("call", object="o1", inputs={"question": "Who?"}, on_lm=lm)
    assert code_output(1) == '{"answer": "nobody"}'
    import dspex_worker

    assert dict(dspex_worker.session_state()) == {}
    assert bridged.error("call", object="o1", inputs={}, session_state=["user"])["type"] == "BadRequest"
