//! Python's `ast.literal_eval` on a string, as DSPy's `parse_value` uses it when
//! `json_repair` finds nothing: `True`/`False`/`None`, numbers in every Python spelling
//! (`+5`, `0x10`, `1_000`, `.5`, `5.`), strings with prefixes, escapes and implicit
//! concatenation, tuples (`1, 2`), lists, dicts, sets, `set()`, signs on numbers, comments.
//!
//! Complex numbers and `...` (which Python accepts) are reported as errors here; DSPy would get
//! a value no field type accepts from them anyway.

use super::py::{Py, dict_set, py_eq};

/// How deep brackets may nest (CPython's parser refuses a little below this).
const MAX_DEPTH: usize = 100;

/// `ast.literal_eval(text)`; `Err` where Python raises `ValueError` or `SyntaxError`.
pub fn literal_eval(text: &str) -> Result<Py, String> {
    let src = text.trim_start_matches([' ', '\t']);
    let tokens = tokenize(src)?;
    let mut p = TokParser {
        tokens: &tokens,
        pos: 0,
        depth: 0,
    };
    let node = p.expressions()?;
    while p.peek() == Some(&Tok::Newline) {
        p.pos += 1;
    }
    if p.pos != tokens.len() {
        return Err("invalid syntax".to_string());
    }
    eval(node)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Int(Py),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Op(char),
    Newline,
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut depth = 0usize;
    let mut line_has_token = false;
    let mut indented = false;
    let mut saw_newline = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\x0c' => {
                if !line_has_token && saw_newline && depth == 0 {
                    indented = true;
                }
                i += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                    i += 1;
                }
            }
            '\\' => {
                // Line continuation.
                match chars.get(i + 1) {
                    Some('\n') => i += 2,
                    Some('\r') => {
                        i += 2;
                        if chars.get(i) == Some(&'\n') {
                            i += 1;
                        }
                    }
                    _ => return Err("unexpected character after line continuation".into()),
                }
            }
            '\n' | '\r' => {
                if depth == 0 {
                    if line_has_token {
                        toks.push(Tok::Newline);
                    }
                    line_has_token = false;
                    indented = false;
                    saw_newline = true;
                }
                i += 1;
            }
            _ => {
                if !line_has_token && depth == 0 && indented {
                    return Err("unexpected indent".into());
                }
                line_has_token = true;
                if let Some((tok, next)) = string_token(&chars, i)? {
                    toks.push(tok);
                    i = next;
                } else if c.is_ascii_digit()
                    || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
                {
                    let (tok, next) = number_token(&chars, i)?;
                    toks.push(tok);
                    i = next;
                } else if unicode_ident::is_xid_start(c) || c == '_' {
                    // Python's identifiers: XID_Start then XID_Continue (PEP 3131).
                    let start = i;
                    while i < chars.len() && unicode_ident::is_xid_continue(chars[i]) {
                        i += 1;
                    }
                    toks.push(Tok::Name(chars[start..i].iter().collect()));
                } else if "()[]{},:+-".contains(c) {
                    match c {
                        '(' | '[' | '{' => depth += 1,
                        ')' | ']' | '}' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    toks.push(Tok::Op(c));
                    i += 1;
                } else {
                    return Err(format!("invalid character {c:?}"));
                }
            }
        }
    }
    Ok(toks)
}

/// A string literal starting at `i` (with its prefix), if there is one.
fn string_token(chars: &[char], i: usize) -> Result<Option<(Tok, usize)>, String> {
    let mut j = i;
    while j < chars.len() && j - i < 2 && chars[j].is_ascii_alphabetic() {
        j += 1;
    }
    let prefix: String = chars[i..j].iter().collect::<String>().to_ascii_lowercase();
    let quote_at = match chars.get(j) {
        Some('\'' | '"') => j,
        _ => match chars.get(i) {
            Some('\'' | '"') => i,
            _ => return Ok(None),
        },
    };
    let prefix = if quote_at == i { String::new() } else { prefix };
    let (raw, bytes) = match prefix.as_str() {
        "" | "u" => (false, false),
        "r" => (true, false),
        "b" => (false, true),
        "rb" | "br" => (true, true),
        // f-strings are not literals; anything else is a name followed by a string.
        _ => return Err("not a literal string".into()),
    };
    let q = chars[quote_at];
    let triple = chars.get(quote_at + 1) == Some(&q) && chars.get(quote_at + 2) == Some(&q);
    let mut k = quote_at + if triple { 3 } else { 1 };
    let mut body = String::new();
    loop {
        let Some(&c) = chars.get(k) else {
            return Err("unterminated string literal".into());
        };
        if c == q {
            if !triple {
                k += 1;
                break;
            }
            if chars.get(k + 1) == Some(&q) && chars.get(k + 2) == Some(&q) {
                k += 3;
                break;
            }
        }
        if !triple && (c == '\n' || c == '\r') {
            return Err("unterminated string literal".into());
        }
        if c == '\\' {
            let Some(&n) = chars.get(k + 1) else {
                return Err("unterminated string literal".into());
            };
            body.push('\\');
            body.push(n);
            k += 2;
            continue;
        }
        body.push(c);
        k += 1;
    }
    if bytes {
        if !body.is_ascii() {
            return Err("bytes can only contain ASCII literal characters".into());
        }
        let decoded = if raw {
            body.into_bytes()
        } else {
            unescape(&body, true)?
                .into_iter()
                .map(|c| c as u8)
                .collect()
        };
        return Ok(Some((Tok::Bytes(decoded), k)));
    }
    let text = if raw {
        body
    } else {
        unescape(&body, false)?.into_iter().collect()
    };
    Ok(Some((Tok::Str(text), k)))
}

/// Python's escape processing for a (non-raw) string or bytes body.
fn unescape(body: &str, bytes: bool) -> Result<Vec<char>, String> {
    let chars: Vec<char> = body.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = chars.get(i + 1) else {
            out.push('\\');
            break;
        };
        i += 2;
        match e {
            '\n' => {}
            '\r' => {
                if chars.get(i) == Some(&'\n') {
                    i += 1;
                }
            }
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut value = e.to_digit(8).unwrap_or(0);
                let mut n = 1;
                while n < 3 && chars.get(i).is_some_and(|d| d.is_digit(8)) {
                    value = value * 8 + chars[i].to_digit(8).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                if bytes {
                    out.push(char::from((value & 0xFF) as u8));
                } else {
                    out.push(char::from_u32(value).unwrap_or('\u{FFFD}'));
                }
            }
            'x' | 'u' | 'U' if !(bytes && e != 'x') => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.get(i..i + n).unwrap_or(&[]).iter().collect();
                if hex.len() != n || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                    return Err(format!("truncated \\{e} escape"));
                }
                let value = u32::from_str_radix(&hex, 16).map_err(|err| err.to_string())?;
                i += n;
                if bytes {
                    out.push(char::from(value as u8));
                } else {
                    out.push(
                        char::from_u32(value)
                            .ok_or_else(|| "illegal Unicode character".to_string())?,
                    );
                }
            }
            'N' if !bytes => return Err("\\N{...} escapes are not supported".into()),
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Digits with single underscores between them, without the underscores.
fn digit_run(chars: &[char], mut i: usize, radix: u32) -> (String, usize) {
    let mut out = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_digit(radix) {
            out.push(c);
            i += 1;
        } else if c == '_' && !out.is_empty() && chars.get(i + 1).is_some_and(|d| d.is_digit(radix))
        {
            i += 1;
        } else {
            break;
        }
    }
    (out, i)
}

fn number_token(chars: &[char], start: usize) -> Result<(Tok, usize), String> {
    let c0 = chars[start];
    let next = chars.get(start + 1).map(char::to_ascii_lowercase);
    let end_ok = |i: usize| -> Result<(), String> {
        match chars.get(i) {
            Some(&c) if c.is_alphanumeric() || c == '_' || c == '.' => {
                Err("invalid decimal literal".into())
            }
            _ => Ok(()),
        }
    };
    if c0 == '0' && matches!(next, Some('x' | 'o' | 'b')) {
        let radix = match next {
            Some('x') => 16,
            Some('o') => 8,
            _ => 2,
        };
        let mut i = start + 2;
        if chars.get(i) == Some(&'_') {
            i += 1;
        }
        let (digits, i) = digit_run(chars, i, radix);
        if digits.is_empty() {
            return Err("invalid number literal".into());
        }
        end_ok(i)?;
        let value =
            i128::from_str_radix(&digits, radix).map_err(|_| "integer too large".to_string())?;
        return Ok((Tok::Int(Py::Int(value)), i));
    }
    let (int_part, mut i) = digit_run(chars, start, 10);
    let mut is_float = false;
    let mut text = int_part.clone();
    if chars.get(i) == Some(&'.') {
        is_float = true;
        i += 1;
        text.push('.');
        let (frac, j) = digit_run(chars, i, 10);
        text.push_str(&frac);
        i = j;
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        let mut exp = String::from("e");
        if let Some(&s @ ('+' | '-')) = chars.get(j) {
            exp.push(s);
            j += 1;
        }
        let (digits, k) = digit_run(chars, j, 10);
        if digits.is_empty() {
            return Err("invalid decimal literal".into());
        }
        exp.push_str(&digits);
        text.push_str(&exp);
        is_float = true;
        i = k;
    }
    if matches!(chars.get(i), Some('j' | 'J')) {
        return Err("complex numbers are not supported".into());
    }
    end_ok(i)?;
    if is_float {
        let f: f64 = text.parse().map_err(|_| "invalid float".to_string())?;
        return Ok((Tok::Float(f), i));
    }
    if int_part.len() > 1 && int_part.starts_with('0') && int_part.bytes().any(|b| b != b'0') {
        return Err("leading zeros in decimal integer literals are not permitted".into());
    }
    let value = match int_part.parse::<i128>() {
        Ok(v) => Py::Int(v),
        Err(_) => Py::BigInt(int_part.trim_start_matches('0').to_string()),
    };
    Ok((Tok::Int(value), i))
}

enum Node {
    Const(Py),
    Bytes(Vec<u8>),
    Signed(char, Box<Node>),
    Tuple(Vec<Node>),
    List(Vec<Node>),
    Set(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    EmptySetCall,
}

struct TokParser<'a> {
    tokens: &'a [Tok],
    pos: usize,
    depth: usize,
}

impl TokParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn is_op(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Op(c))
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.is_op(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {c:?}"))
        }
    }

    fn starts_expression(&self) -> bool {
        match self.peek() {
            Some(Tok::Op(c)) => "([{+-".contains(*c),
            Some(Tok::Newline) | None => false,
            Some(_) => true,
        }
    }

    /// `expression (',' expression)* [',']`: a tuple when there is a comma.
    fn expressions(&mut self) -> Result<Node, String> {
        let first = self.expression()?;
        if !self.is_op(',') {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_op(',') {
            self.pos += 1;
            if !self.starts_expression() {
                break;
            }
            items.push(self.expression()?);
        }
        Ok(Node::Tuple(items))
    }

    fn expression(&mut self) -> Result<Node, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("too many nested parentheses".into());
        }
        let node = match self.peek().cloned() {
            Some(Tok::Op(s @ ('+' | '-'))) => {
                self.pos += 1;
                Node::Signed(s, Box::new(self.expression_no_binop()?))
            }
            _ => self.atom()?,
        };
        // Binary `+`/`-` only form complex literals, which are not supported.
        if self.is_op('+') || self.is_op('-') {
            return Err("binary operations are not literals".into());
        }
        self.depth -= 1;
        Ok(node)
    }

    fn expression_no_binop(&mut self) -> Result<Node, String> {
        match self.peek().cloned() {
            Some(Tok::Op(s @ ('+' | '-'))) => {
                self.pos += 1;
                Ok(Node::Signed(s, Box::new(self.expression_no_binop()?)))
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Node, String> {
        let tok = self.peek().cloned().ok_or("unexpected end of input")?;
        self.pos += 1;
        match tok {
            Tok::Int(v) => Ok(Node::Const(v)),
            Tok::Float(f) => Ok(Node::Const(Py::Float(f))),
            Tok::Str(mut s) => {
                loop {
                    match self.peek() {
                        Some(Tok::Str(more)) => {
                            s.push_str(more);
                            self.pos += 1;
                        }
                        Some(Tok::Bytes(_)) => {
                            return Err("cannot mix bytes and nonbytes literals".into());
                        }
                        _ => break,
                    }
                }
                Ok(Node::Const(Py::Str(s)))
            }
            Tok::Bytes(mut b) => {
                loop {
                    match self.peek() {
                        Some(Tok::Bytes(more)) => {
                            b.extend_from_slice(more);
                            self.pos += 1;
                        }
                        Some(Tok::Str(_)) => {
                            return Err("cannot mix bytes and nonbytes literals".into());
                        }
                        _ => break,
                    }
                }
                Ok(Node::Bytes(b))
            }
            Tok::Name(n) => match n.as_str() {
                "True" => Ok(Node::Const(Py::Bool(true))),
                "False" => Ok(Node::Const(Py::Bool(false))),
                "None" => Ok(Node::Const(Py::None)),
                "set" if self.is_op('(') => {
                    self.pos += 1;
                    self.expect(')')?;
                    Ok(Node::EmptySetCall)
                }
                _ => Err(format!("malformed node or string: name {n}")),
            },
            Tok::Op('(') => {
                if self.is_op(')') {
                    self.pos += 1;
                    return Ok(Node::Tuple(Vec::new()));
                }
                let inner = self.expressions()?;
                self.expect(')')?;
                Ok(inner)
            }
            Tok::Op('[') => {
                let items = self.items(']')?;
                Ok(Node::List(items))
            }
            Tok::Op('{') => {
                if self.is_op('}') {
                    self.pos += 1;
                    return Ok(Node::Dict(Vec::new()));
                }
                let first = self.expression()?;
                if self.is_op(':') {
                    self.pos += 1;
                    let value = self.expression()?;
                    let mut entries = vec![(first, value)];
                    while self.is_op(',') {
                        self.pos += 1;
                        if self.is_op('}') {
                            break;
                        }
                        let k = self.expression()?;
                        self.expect(':')?;
                        let v = self.expression()?;
                        entries.push((k, v));
                    }
                    self.expect('}')?;
                    Ok(Node::Dict(entries))
                } else {
                    let mut items = vec![first];
                    while self.is_op(',') {
                        self.pos += 1;
                        if self.is_op('}') {
                            break;
                        }
                        items.push(self.expression()?);
                    }
                    self.expect('}')?;
                    Ok(Node::Set(items))
                }
            }
            other => Err(format!("invalid syntax at {other:?}")),
        }
    }

    fn items(&mut self, close: char) -> Result<Vec<Node>, String> {
        let mut items = Vec::new();
        loop {
            if self.is_op(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.expression()?);
            if self.is_op(',') {
                self.pos += 1;
            } else {
                self.expect(close)?;
                return Ok(items);
            }
        }
    }
}

fn eval(node: Node) -> Result<Py, String> {
    Ok(match node {
        Node::Const(v) => v,
        Node::Bytes(b) => Py::Bytes(b),
        Node::Signed(sign, inner) => {
            let v = match *inner {
                Node::Const(v @ (Py::Int(_) | Py::BigInt(_) | Py::Float(_))) => v,
                _ => return Err("malformed node or string: a sign applies only to numbers".into()),
            };
            match (sign, v) {
                ('+', v) => v,
                (_, Py::Int(i)) => Py::Int(-i),
                (_, Py::Float(f)) => Py::Float(-f),
                (_, Py::BigInt(s)) => Py::BigInt(match s.strip_prefix('-') {
                    Some(rest) => rest.to_string(),
                    None => format!("-{s}"),
                }),
                (_, other) => other,
            }
        }
        Node::Tuple(items) | Node::List(items) => {
            Py::List(items.into_iter().map(eval).collect::<Result<_, _>>()?)
        }
        Node::Set(items) => {
            let mut out: Vec<Py> = Vec::new();
            for item in items {
                check_hashable(&item)?;
                let v = eval(item)?;
                if !out.iter().any(|x| py_eq(x, &v)) {
                    out.push(v);
                }
            }
            Py::List(out)
        }
        Node::EmptySetCall => Py::List(Vec::new()),
        Node::Dict(entries) => {
            let mut out = Vec::new();
            for (k, v) in entries {
                check_hashable(&k)?;
                let k = eval(k)?;
                dict_set(&mut out, k, eval(v)?);
            }
            Py::Dict(out)
        }
    })
}

/// Lists, dicts and sets cannot be set members or dict keys (Python raises `TypeError`);
/// tuples can when their items can.
fn check_hashable(node: &Node) -> Result<(), String> {
    match node {
        Node::List(_) | Node::Dict(_) | Node::Set(_) | Node::EmptySetCall => {
            Err("unhashable type".into())
        }
        Node::Tuple(items) => items.iter().try_for_each(check_hashable),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Py {
        literal_eval(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn python_literals() {
        assert_eq!(ok("True"), Py::Bool(true));
        assert_eq!(ok("None"), Py::None);
        assert_eq!(ok("+5"), Py::Int(5));
        assert_eq!(ok("-5"), Py::Int(-5));
        assert_eq!(ok("0x10"), Py::Int(16));
        assert_eq!(ok("0o17"), Py::Int(15));
        assert_eq!(ok("0b101"), Py::Int(5));
        assert_eq!(ok("1_000"), Py::Int(1000));
        assert_eq!(ok(".5"), Py::Float(0.5));
        assert_eq!(ok("5."), Py::Float(5.0));
        assert_eq!(ok("1e3"), Py::Float(1000.0));
        assert_eq!(ok("'12'"), Py::Str("12".into()));
        assert_eq!(ok("'a' \"b\""), Py::Str("ab".into()));
        assert_eq!(ok("'\\x41\\n\\u00e9'"), Py::Str("A\né".into()));
        assert_eq!(ok("r'\\n'"), Py::Str("\\n".into()));
        assert_eq!(ok("'''a\nb'''"), Py::Str("a\nb".into()));
        assert_eq!(ok("b'ab'"), Py::Bytes(b"ab".to_vec()));
        assert_eq!(ok("1, 2"), Py::List(vec![Py::Int(1), Py::Int(2)]));
        assert_eq!(ok("(1,)"), Py::List(vec![Py::Int(1)]));
        assert_eq!(ok("(5)"), Py::Int(5));
        assert_eq!(ok("-(5)"), Py::Int(-5));
        assert_eq!(
            ok("[1, 'a',]"),
            Py::List(vec![Py::Int(1), Py::Str("a".into())])
        );
        assert_eq!(ok("{1, 1, 2}"), Py::List(vec![Py::Int(1), Py::Int(2)]));
        assert_eq!(ok("set()"), Py::List(vec![]));
        assert_eq!(
            ok("{'a': [1, {2: None}]}  # comment\n"),
            Py::Dict(vec![(
                Py::Str("a".into()),
                Py::List(vec![Py::Int(1), Py::Dict(vec![(Py::Int(2), Py::None)])])
            )])
        );
        assert_eq!(ok("[1,\n 2]"), Py::List(vec![Py::Int(1), Py::Int(2)]));
        assert_eq!(ok("  7"), Py::Int(7));
        assert_eq!(
            ok("123456789012345678901234567890123456789012"),
            Py::BigInt("123456789012345678901234567890123456789012".into())
        );
    }

    /// Identifiers are Python's (XID_Start, XID_Continue), not Rust's `is_alphabetic`: a circled
    /// digit is an invalid character to Python, a Roman numeral a name (both errors, as in 3.11).
    #[test]
    fn identifiers_are_pythons() {
        for text in ["\u{2460}", "x\u{2460}"] {
            let err = literal_eval(text).expect_err(text);
            assert!(err.contains("invalid character"), "{text:?}: {err}");
        }
        let err = literal_eval("\u{2170}").expect_err("a name");
        assert!(!err.contains("invalid character"), "{err}");
    }

    #[test]
    fn non_literals_are_errors() {
        for text in [
            "",
            "yes",
            "hello world",
            "42abc",
            "42 is the answer",
            "1 + 2",
            "1j",
            "f'x'",
            "01",
            "--5",
            "-True",
            "[1, 2",
            "1\n2",
            "a, b",
            "print(1)",
            "{[1]: 2}",
            "\n  1",
            "'abc",
            "1,5 apples",
            "nan",
            "inf",
            "{'a' 1}",
            "[1 2]",
            "x = 1",
            "...",
        ] {
            assert!(literal_eval(text).is_err(), "{text:?} should fail");
        }
        let deep = "[".repeat(10_000);
        assert!(literal_eval(&deep).is_err());
    }
}
