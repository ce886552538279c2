//! Python's string semantics where DSPy's prompts and parsers depend on them: `str.isspace`,
//! `str.strip`, `str.splitlines`, `textwrap.dedent`, float `repr` and `json.dumps`.

use serde_json::Value;
use std::fmt::Write as _;

/// Python's `str.isspace()` for one character. Unlike Rust's `char::is_whitespace` it also
/// counts the information separators `\x1c`–`\x1f`.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()` (no arguments).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `str.strip()` applied to an owned string in place.
pub fn py_strip_in_place(s: &mut String) {
    let end = s.trim_end_matches(is_py_space).len();
    s.truncate(end);
    let start = s.len() - s.trim_start_matches(is_py_space).len();
    if start > 0 {
        s.drain(..start);
    }
}

/// Whether Python's `str.splitlines()` ends a line at `c` (`\r\n` is handled by the caller).
pub fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Python's `str.splitlines()`: splits on every Unicode line boundary (`\n`, `\r\n`, `\r`,
/// `\x0b`, `\x0c`, `\x1c`–`\x1e`, `\x85`, `\u2028`, `\u2029`) and drops the terminators; a
/// trailing terminator does not produce an empty last line.
pub fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_line_break(c) {
            out.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r'
                && let Some(&(_, '\n')) = chars.peek()
            {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Python's `textwrap.dedent`: lines made only of spaces and tabs become empty, then the
/// longest run of leading spaces/tabs common to every other line is removed. Lines are
/// `\n`-separated here (as `textwrap`'s regular expressions see them).
pub fn dedent(text: &str) -> std::borrow::Cow<'_, str> {
    let is_blank = |line: &str| !line.is_empty() && line.chars().all(|c| c == ' ' || c == '\t');
    let mut margin: Option<&str> = None;
    let mut has_blank = false;
    for line in text.split('\n') {
        if is_blank(line) {
            has_blank = true;
            continue;
        }
        let indent_len = line.len() - line.trim_start_matches([' ', '\t']).len();
        if indent_len == line.len() {
            // An empty line: no text, so it does not constrain the margin.
            continue;
        }
        let indent = &line[..indent_len];
        margin = Some(match margin {
            None => indent,
            Some(m) if indent.starts_with(m) => m,
            Some(m) if m.starts_with(indent) => indent,
            Some(m) => {
                let common = m
                    .bytes()
                    .zip(indent.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                &m[..common]
            }
        });
    }
    let margin = margin.unwrap_or("");
    if margin.is_empty() && !has_blank {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if is_blank(line) {
            continue;
        }
        out.push_str(line.strip_prefix(margin).unwrap_or(line));
    }
    std::borrow::Cow::Owned(out)
}

/// Appends Python's `repr()` of a float: the shortest digits that round-trip, in positional
/// notation with a `.0` for integral values when the decimal exponent is in `-4..16`, otherwise
/// in exponent notation with a signed, at least two-digit exponent (`1e+16`, `1e-05`);
/// `nan`, `inf`, `-inf` for the non-finite values.
pub fn write_py_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    write_shortest_float(out, f, -4..16, 2);
}

/// Appends a finite float in the shortest digits that round-trip: positional notation (with a
/// `.0` for integral values) when the decimal exponent is in `positional`, otherwise `d.ddd`
/// then `e`, the exponent's sign and at least `exp_digits` digits of it. Python's `repr` and
/// orjson differ only in those two choices.
pub fn write_shortest_float(
    out: &mut String,
    f: f64,
    positional: std::ops::Range<i32>,
    exp_digits: usize,
) {
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits = half_even(
        f.abs(),
        mantissa.chars().filter(char::is_ascii_digit).collect(),
        exp,
    );
    if negative {
        out.push('-');
    }
    if positional.contains(&exp) {
        let decpt = exp + 1;
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let decpt = decpt as usize;
            if decpt >= digits.len() {
                out.push_str(&digits);
                for _ in digits.len()..decpt {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..decpt]);
                out.push('.');
                out.push_str(&digits[decpt..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:0exp_digits$}", exp.unsigned_abs());
    }
}

/// The shortest digits of `x` (positive, finite; `digits` × 10^`exp`, one digit before the
/// point) as Python's `repr` and ryu choose them: of two shortest candidates exactly as close
/// to `x`, the one with the even last digit. Rust's shortest formatting takes the larger one
/// (`951548622688640.25` prints as `…640.3`, Python's `…640.2`).
fn half_even(x: f64, digits: String, exp: i32) -> String {
    let n = digits.len();
    let last = digits.as_bytes()[n - 1] - b'0';
    if last.is_multiple_of(2) {
        return digits;
    }
    let with_last = |d: u8| format!("{}{}", &digits[..n - 1], char::from(b'0' + d));
    let sci = |d: &str| {
        format!(
            "{}.{}e{exp}",
            &d[..1],
            if d.len() > 1 { &d[1..] } else { "0" }
        )
    };
    for neighbour in [last.checked_sub(1), (last < 9).then_some(last + 1)] {
        let Some(neighbour) = neighbour else { continue };
        let other = with_last(neighbour);
        // The point halfway between the two: a tie only if `x` is exactly that number.
        let low = if neighbour < last { &other } else { &digits };
        let midpoint = format!("{low}5");
        if sci(&midpoint).parse::<f64>() != Ok(x) || sci(&other).parse::<f64>() != Ok(x) {
            continue;
        }
        // A double's exact decimal expansion has at most 767 significant digits.
        let exact = format!("{x:.800e}");
        let (mantissa, exact_exp) = exact.split_once('e').unwrap_or((exact.as_str(), ""));
        let exact_digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let tie = exact_exp == exp.to_string()
            && exact_digits.starts_with(&midpoint)
            && exact_digits[midpoint.len()..].bytes().all(|b| b == b'0');
        if tie {
            return other;
        }
    }
    digits
}

/// Python's `repr()` of a float as a new string.
#[cfg(test)]
pub fn py_float(f: f64) -> String {
    let mut s = String::new();
    write_py_float(&mut s, f);
    s
}

/// Appends a JSON number as Python prints it: integers as they are, floats per
/// [`write_py_float`].
pub fn write_py_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        write_py_float(out, n.as_f64().unwrap_or(f64::NAN));
    }
}

/// Appends a JSON string literal as Python's `json.dumps(..., ensure_ascii=False)` writes it.
pub fn write_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut plain_start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\x08' => "\\b",
            '\x0c' => "\\f",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain_start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(escape);
        }
        plain_start = i + c.len_utf8();
    }
    out.push_str(&s[plain_start..]);
    out.push('"');
}

/// Appends Python's `json.dumps(value, ensure_ascii=False)`: `", "` and `": "` separators,
/// floats in Python's `repr`.
pub fn write_py_json(out: &mut String, value: &Value) {
    write_py_json_with(out, value, write_json_str);
}

/// Appends Python's `json.dumps(value)` with its defaults (`ensure_ascii=True`): as
/// [`write_py_json`], with every character outside printable ASCII escaped (`\u00e9`,
/// surrogate pairs beyond the BMP).
pub fn write_py_json_ascii(out: &mut String, value: &Value) {
    write_py_json_with(out, value, write_json_str_ascii);
}

fn write_py_json_with(out: &mut String, value: &Value, string: fn(&mut String, &str)) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_py_number(out, n),
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_json_with(out, item, string);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                string(out, k);
                out.push_str(": ");
                write_py_json_with(out, v, string);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal as Python's `json.dumps` writes it with `ensure_ascii=True`.
pub fn write_json_str_ascii(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Appends Python's `json.dumps(value, indent=2, ensure_ascii=False)` of a nested value at
/// nesting `level` (`","` item separator, `": "` key separator, empty containers as `[]`/`{}`).
pub fn write_py_json_indented(out: &mut String, value: &Value, level: usize) {
    write_json_indented(out, value, level, write_py_number);
}

/// Appends `value` as JSON indented by two spaces a level, from nesting `level`: `","` item
/// separator, `": "` key separator, empty containers as `[]`/`{}`, strings as
/// [`write_json_str`] writes them, and numbers as `number` writes them (Python's `json.dumps`
/// and orjson's `OPT_INDENT_2` differ only there).
pub fn write_json_indented(
    out: &mut String,
    value: &Value,
    level: usize,
    number: fn(&mut String, &serde_json::Number),
) {
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_json_indented(out, item, level + 1, number);
            }
            newline_indent(out, level);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_json_str(out, k);
                out.push_str(": ");
                write_json_indented(out, v, level + 1, number);
            }
            newline_indent(out, level);
            out.push('}');
        }
        Value::Number(n) => number(out, n),
        other => write_py_json(out, other),
    }
}

/// A newline and two spaces per level.
pub fn newline_indent(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

/// A short JSON rendering of a value for error messages.
pub fn compact_json(value: &Value) -> String {
    let mut s = String::new();
    write_py_json(&mut s, value);
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_float_repr() {
        let cases = [
            (3.0, "3.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e20, "1e+20"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (0.00012345, "0.00012345"),
            (-2.5e-7, "-2.5e-07"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.85, "0.85"),
            (123456.789, "123456.789"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            // Exact ties between two shortest candidates go to the even digit, as in Python.
            (-951548622688640.2, "-951548622688640.2"),
            (951548622688640.2, "951548622688640.2"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float(f), want, "{f:e}");
        }
    }

    #[test]
    fn python_strip_and_lines() {
        assert_eq!(py_strip("\x1c a \u{3000}"), "a");
        assert_eq!(
            py_splitlines("a\r\nb\rc\u{2028}d\n"),
            vec!["a", "b", "c", "d"]
        );
        assert_eq!(py_splitlines("a\n\nb"), vec!["a", "", "b"]);
        assert!(py_splitlines("").is_empty());
        let mut s = String::from("\n\n x \t");
        py_strip_in_place(&mut s);
        assert_eq!(s, "x");
    }

    #[test]
    fn textwrap_dedent() {
        assert_eq!(dedent("  a\n    b\n  c"), "a\n  b\nc");
        assert_eq!(dedent("a\n   \nb"), "a\n\nb");
        assert_eq!(dedent("\ta\n  b"), "\ta\n  b");
        assert_eq!(dedent("  a\n\n  b"), "a\n\nb");
    }

    #[test]
    fn python_json_dumps() {
        let v = json!({"k": "v\n\"é\u{1}", "n": [1, 2.5, 1e20, null, true], "e": {}});
        let mut s = String::new();
        write_py_json(&mut s, &v);
        assert_eq!(
            s,
            r#"{"k": "v\n\"é\u0001", "n": [1, 2.5, 1e+20, null, true], "e": {}}"#
        );
        let mut s = String::new();
        write_py_json_indented(&mut s, &json!({"a": [1, {"b": []}], "c": {}}), 0);
        assert_eq!(
            s,
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ],\n  \"c\": {}\n}"
        );
    }
}
