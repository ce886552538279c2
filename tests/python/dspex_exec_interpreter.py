"""A code interpreter for DSPy's ProgramOfThought in the tests, named by import path in `create`'s
`kwargs.interpreter_factory` (`dspex_exec_interpreter:ExecInterpreter`).

DSPy's own `PythonInterpreter` runs the code in Deno's Pyodide, which the test machines lack. This
one runs it with `exec` in a namespace of its own, in the worker's process: for the tests' mock
LM's canned code only, never for code from a real model.
"""

from dspy.primitives.code_interpreter import CodeExecutionError, FinalOutput


class _Submitted(Exception):
    def __init__(self, output):
        super().__init__("SUBMIT")
        self.output = output


class ExecInterpreter:
    """`dspy.CodeInterpreter`: `SUBMIT(dict)` ends the code with a `FinalOutput`."""

    def __init__(self):
        self.namespace = {}
        self.executed = []

    @property
    def tools(self):
        return {}

    def start(self):
        pass

    def execute(self, code, variables=None):
        def submit(output=None, **fields):
            raise _Submitted(output if output is not None else fields)

        self.namespace.update(variables or {})
        self.namespace["SUBMIT"] = submit
        self.executed.append(code)
        try:
            exec(compile(code, "<program_of_thought>", "exec"), self.namespace)
        except _Submitted as done:
            return FinalOutput(done.output)
        except SyntaxError:
            raise
        except Exception as e:
            raise CodeExecutionError(f"{type(e).__name__}: {e}") from e
        return None

    def shutdown(self):
        self.namespace.clear()
