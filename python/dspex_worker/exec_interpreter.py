"""An in-process code interpreter for DSPy's ProgramOfThought and CodeAct, named by import path in
the module's `interpreter_factory` keyword: `dspex_worker.exec_interpreter:ExecInterpreter`.

DSPy's own `PythonInterpreter` runs generated code in Deno's Pyodide sandbox; where Deno is
installed, leave `interpreter_factory` out to use it. This one runs the code with `exec` in a
namespace of its own, inside the worker's process, and needs nothing but DSPy. It is NOT a sandbox:
the code can do whatever the worker can. Use it for code you trust (tests, examples, canned code),
or confine the whole worker with the pool's sandbox options (`read_only_fs`, `no_network`,
`cpu_seconds`, `memory_mb`).

`SUBMIT(dict)` or `SUBMIT(field=value, ...)` ends the code with its output; an exception in the
code is a `CodeExecutionError` (which ProgramOfThought answers by regenerating the code); a syntax
error is raised as is. Variables persist between `execute` calls until `shutdown`.
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
