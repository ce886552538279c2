"""A module that spins on the CPU forever when imported: `tests/tests/bridge_dspy.rs` names it as a
tool (`dspex_cpu_spin:spin`) of a `create`, whose import then runs into the pool's CPU limit."""

while True:
    pass


def spin():  # never reached; names what the test imports
    pass
