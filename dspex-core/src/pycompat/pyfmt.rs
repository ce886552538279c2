//! Python's number rounding and text forms, as DSPy's `Evaluate` writes scores, tables and
//! exports: `round(x, n)`, `str()`, `repr()` of floats, `json.dump` with its defaults.

use crate::pycompat::py::{Py, from_json, write_repr};
use serde_json::Value;

/// Python's `round(x, ndigits)` for a float: the exact binary value rounded to `ndigits`
/// decimals, ties to even (`round(0.125, 2) == 0.12`, `round(12.135, 2) == 12.13`).
///
/// Rust's `{:.N}` formatting rounds the exact value with ties to even, as CPython's
/// `_Py_dg_dtoa` mode 3 does; reading the digits back gives the nearest double, as CPython's
/// `strtod` does.
pub fn py_round(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.ndigits$}").parse().unwrap_or(x)
}

/// Python's `repr()` (= `str()`) of a float: `0.75`, `1.0`, `1e-05`, `nan`, `inf`.
pub fn py_float(x: f64) -> String {
    let mut out = String::new();
    write_repr(&mut out, &Py::Float(x));
    out
}

/// Python's `f"{x:.3f}"`.
pub fn py_fixed3(x: f64) -> String {
    if x.is_nan() {
        "nan".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{x:.3}")
    }
}

/// Python's `str()` of a JSON value: a string as it is, `None`, `True`, numbers, and the
/// `repr()` of lists and dicts (`['a', 1.0]`, `{'k': None}`).
pub fn py_str(value: &Value) -> String {
    crate::pycompat::py::py_str(&from_json(value))
}

/// Appends Python's `json.dumps(value)` with its defaults: `", "` and `": "` separators,
/// every character outside printable ASCII escaped (`\u00e9`, surrogate pairs beyond the BMP),
/// floats in Python's `repr`.
pub fn write_json(out: &mut String, value: &Value) {
    crate::pycompat::text::write_py_json_ascii(out, value);
}

/// A float as `json.dumps` writes it: its `repr`, or `NaN` / `Infinity` / `-Infinity`.
pub fn write_json_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&py_float(x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_matches_python() {
        // (x, round(x, 2), round(x, 1)) from CPython 3.11.
        let cases = [
            (0.125, 0.12, 0.1),
            (0.375, 0.38, 0.4),
            (2.675, 2.67, 2.7),
            (12.125, 12.12, 12.1),
            (12.135, 12.13, 12.1),
            (100.0 / 3.0, 33.33, 33.3),
            (200.0 / 3.0, 66.67, 66.7),
            (-0.125, -0.12, -0.1),
            (0.0001, 0.0, 0.0),
            (0.05, 0.05, 0.1),
            (0.25, 0.25, 0.2),
            (0.35, 0.35, 0.3),
            (1e300, 1e300, 1e300),
        ];
        for (x, two, one) in cases {
            assert_eq!(py_round(x, 2), two, "round({x}, 2)");
            assert_eq!(py_round(x, 1), one, "round({x}, 1)");
        }
        // 97/800 as a percentage is 12.125 exactly, a tie: to even.
        assert_eq!(py_round(100.0 * 97.0 / 800.0, 2), 12.12);
        assert!(py_round(f64::NAN, 2).is_nan());
        assert_eq!(py_round(f64::INFINITY, 2), f64::INFINITY);
        assert_eq!(py_float(py_round(-0.001, 2)), "-0.0");
    }

    #[test]
    fn percentages_match_python_for_every_small_fraction() {
        // Every `round(100 * k / n, 2)` and `round(..., 1)` for 0 <= k <= n <= 200, and for each
        // n the percentage of a float sum of n tenths, as DSPy's Evaluate computes it. The digest
        // is CPython 3.11's, from:
        //   for n in range(1, 201):
        //       for k in range(n + 1): x = 100*k/n; lines.append(f"{round(x,2)!r} {round(x,1)!r}")
        //       s = 0
        //       for _ in range(n): s += 0.1
        //       x = 100*s/n; lines.append(f"{round(x,2)!r} {round(x,1)!r} {s!r}")
        //   sha256("\n".join(lines))
        use sha2::{Digest, Sha256};
        let mut lines = Vec::new();
        for n in 1..=200u32 {
            for k in 0..=n {
                let x = f64::from(100 * k) / f64::from(n);
                lines.push(format!(
                    "{} {}",
                    py_float(py_round(x, 2)),
                    py_float(py_round(x, 1))
                ));
            }
            let mut s = 0.0;
            for _ in 0..n {
                s += 0.1;
            }
            let x = 100.0 * s / f64::from(n);
            lines.push(format!(
                "{} {} {}",
                py_float(py_round(x, 2)),
                py_float(py_round(x, 1)),
                py_float(s)
            ));
        }
        assert_eq!(lines.len(), 20500);
        let digest = Sha256::digest(lines.join("\n").as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "2144d13772086cf772798661141ed1628fc30a627f17f7af5f5f284c47e617ec"
        );
    }

    #[test]
    fn text_forms_match_python() {
        assert_eq!(py_float(0.75), "0.75");
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_fixed3(0.75), "0.750");
        assert_eq!(py_fixed3(2.0 / 3.0), "0.667");
        assert_eq!(py_fixed3(f64::NAN), "nan");
        assert_eq!(py_str(&json!("a b")), "a b");
        assert_eq!(py_str(&json!(true)), "True");
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(
            py_str(&json!([1, 2.5, true, null, "é"])),
            "[1, 2.5, True, None, 'é']"
        );
        assert_eq!(
            py_str(&json!({"k": 1.0, "n": 1e-05, "s": "a\u{2028}b😀"})),
            "{'k': 1.0, 'n': 1e-05, 's': 'a\\u2028b😀'}"
        );
    }

    #[test]
    fn json_matches_python_json_dumps() {
        let mut out = String::new();
        write_json(
            &mut out,
            &json!({"q": "Zürich \"quoted\", comma\nnewline", "x": [1, 2.5, true, null, "é"],
                    "m": {"k": 1.0, "n": 1e-05, "s": "a\u{2028}b😀\u{7f}\u{1}"}}),
        );
        // json.dumps of the same dict, CPython 3.11.
        assert_eq!(
            out,
            r#"{"q": "Z\u00fcrich \"quoted\", comma\nnewline", "x": [1, 2.5, true, null, "\u00e9"], "m": {"k": 1.0, "n": 1e-05, "s": "a\u2028b\ud83d\ude00\u007f\u0001"}}"#
        );
        let mut out = String::new();
        write_json_float(&mut out, f64::NAN);
        write_json_float(&mut out, f64::NEG_INFINITY);
        assert_eq!(out, "NaN-Infinity");
    }
}
