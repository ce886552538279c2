//! Python's strict `json` decoder (`json.loads`, `JSONDecoder.raw_decode`), on characters:
//! what `json_repair.loads` tries before repairing.

use super::super::py::{Py, dict_set};

/// Deepest nesting the strict decoder reads (beyond it the repairing parser takes over).
const MAX_DEPTH: usize = 200;

/// `json.loads`: one value with JSON whitespace around it, or `None`.
pub fn loads(s: &[char]) -> Option<Py> {
    let mut d = Decoder { s, i: 0, depth: 0 };
    d.ws();
    let v = d.value()?;
    d.ws();
    (d.i == s.len()).then_some(v)
}

/// `JSONDecoder().raw_decode(s)`: a value starting exactly at the first character and where
/// it ends.
pub fn raw_decode(s: &[char]) -> Option<(Py, usize)> {
    let mut d = Decoder { s, i: 0, depth: 0 };
    let v = d.value()?;
    Some((v, d.i))
}

struct Decoder<'a> {
    s: &'a [char],
    i: usize,
    depth: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        let n = word.chars().count();
        if self.s.len() >= self.i + n && self.s[self.i..self.i + n].iter().copied().eq(word.chars())
        {
            self.i += n;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Py> {
        match self.peek()? {
            '"' => {
                self.i += 1;
                self.string().map(Py::Str)
            }
            '{' => {
                self.i += 1;
                self.nested(Self::object)
            }
            '[' => {
                self.i += 1;
                self.nested(Self::array)
            }
            'n' if self.eat("null") => Some(Py::None),
            't' if self.eat("true") => Some(Py::Bool(true)),
            'f' if self.eat("false") => Some(Py::Bool(false)),
            'N' if self.eat("NaN") => Some(Py::Float(f64::NAN)),
            'I' if self.eat("Infinity") => Some(Py::Float(f64::INFINITY)),
            '-' if self.eat("-Infinity") => Some(Py::Float(f64::NEG_INFINITY)),
            c if c == '-' || c.is_ascii_digit() => self.number(),
            _ => None,
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Option<Py>) -> Option<Py> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn number(&mut self) -> Option<Py> {
        let start = self.i;
        if self.peek() == Some('-') {
            self.i += 1;
        }
        match self.peek()? {
            '0' => self.i += 1,
            '1'..='9' => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let mut is_float = false;
        if self.peek() == Some('.') && self.s.get(self.i + 1).is_some_and(char::is_ascii_digit) {
            is_float = true;
            self.i += 1;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let mut j = self.i + 1;
            if matches!(self.s.get(j), Some('+' | '-')) {
                j += 1;
            }
            if self.s.get(j).is_some_and(char::is_ascii_digit) {
                is_float = true;
                self.i = j;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
        }
        let text: String = self.s[start..self.i].iter().collect();
        if is_float {
            text.parse::<f64>().ok().map(Py::Float)
        } else {
            super::python_int(&text)
        }
    }

    fn string(&mut self) -> Option<String> {
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                '"' => return Some(out),
                '\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\x08'),
                        'f' => out.push('\x0c'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi)
                                && self.peek() == Some('\\')
                                && self.s.get(self.i + 1) == Some(&'u')
                            {
                                let save = self.i;
                                self.i += 2;
                                match self.hex4() {
                                    Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                        let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                        out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                                        continue;
                                    }
                                    _ => self.i = save,
                                }
                            }
                            out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
                        }
                        _ => return None,
                    }
                }
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        if !digits.iter().all(char::is_ascii_hexdigit) {
            return None;
        }
        let text: String = digits.iter().collect();
        self.i += 4;
        u32::from_str_radix(&text, 16).ok()
    }

    fn object(&mut self) -> Option<Py> {
        let mut entries: Vec<(Py, Py)> = Vec::new();
        self.ws();
        if self.peek() == Some('}') {
            self.i += 1;
            return Some(Py::Dict(entries));
        }
        loop {
            if self.peek() != Some('"') {
                return None;
            }
            self.i += 1;
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(':') {
                return None;
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            dict_set(&mut entries, Py::Str(key), v);
            self.ws();
            match self.peek()? {
                ',' => {
                    self.i += 1;
                    self.ws();
                }
                '}' => {
                    self.i += 1;
                    return Some(Py::Dict(entries));
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self) -> Option<Py> {
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(']') {
            self.i += 1;
            return Some(Py::List(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.peek()? {
                ',' => {
                    self.i += 1;
                    self.ws();
                }
                ']' => {
                    self.i += 1;
                    return Some(Py::List(items));
                }
                _ => return None,
            }
        }
    }
}
