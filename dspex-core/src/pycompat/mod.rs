//! Python compatibility: the code that exists only so dspex matches DSPy 3.4.1 byte for byte.
//!
//! DSPy's prompts, parsers, scores and random choices are Python's: its parsers repair JSON with
//! the `json_repair` package and read literals with `ast.literal_eval`, its values are validated
//! the lax way pydantic validates them, its prompts print floats and dicts the way `repr` and
//! `json.dumps` do, and its optimizers draw from `random.Random` and (through optuna) numpy's
//! `RandomState`. Where dspex must agree with DSPy on the same input, it runs ports of those
//! algorithms, kept here, in one place, apart from the adapters, evaluation and optimizers that
//! use them:
//!
//! - [`json_repair`] — the `json_repair` package's repair of broken JSON (with its strict
//!   decoder), as DSPy's JSONAdapter and ChatAdapter use it.
//! - [`literal_eval`] — `ast.literal_eval` for Python literals.
//! - [`etree`] — `xml.etree.ElementTree`'s parse (strict XML, as expat) and `tostring`, as
//!   DSPy's XMLAdapter uses them.
//! - [`py`] — Python values (`Py`), their equality, `str` and `repr`.
//! - [`text`] — Python's string semantics: `str.isspace`, `strip`, `splitlines`,
//!   `textwrap.dedent`, float `repr`, `json.dumps` (with and without `ensure_ascii`, indented).
//! - [`value`] — the lax, pydantic-style validation of a parsed value into a field's type
//!   (DSPy's `parse_value`).
//! - [`pyfmt`] — `round`, `str` and `repr` of numbers and `json.dump`, as Evaluate writes them.
//! - [`random`] — CPython's `random.Random` (MT19937), bit for bit ([`PyRandom`]).
//! - [`intset`] — the iteration order of CPython's `set` of ints, as gepa's seeded choices see
//!   it.
//! - [`numpy`] — numpy's legacy `RandomState` and `np.sum`, as optuna's TPE sampler uses them.
//!
//! Every parser here reads bytes dspex does not control (LM completions), so each has a fuzz
//! target (`fuzz/fuzz_targets/json_repair.rs`, `literal_eval.rs`, `parse_value.rs`, …, through
//! the hidden `__fuzz` module) and a differential test against the Python original in the venv
//! (`tests/tests/pycompat.rs`).

pub mod etree;
pub mod intset;
pub mod json_repair;
pub mod literal_eval;
pub mod numpy;
pub mod py;
pub mod pyfmt;
pub mod random;
pub mod text;
pub mod value;

pub use random::{PyRandom, RandomError};
