//! A port of `json_repair.loads` (json_repair 0.64.6, the version DSPy 3.4.1 ships with),
//! without its schema and streaming modes: Python's strict `json.loads` first, then the
//! repairing parser with every heuristic DSPy's parsing meets (code fences, prose around JSON,
//! single/smart quotes, unquoted keys and values, missing commas/colons/brackets, comments,
//! Python literals `True`/`None`, tuples, concatenated values …).
//!
//! Positions are counted in characters, as Python counts them. The port adds two guards: a
//! nesting limit (Python raises `RecursionError` there) and a work budget — characters scanned
//! plus parser steps — of `n²` for an input of `n` characters, capped at `MAX_WORK`. The
//! repair heuristics look ahead, so on adversarial input they are quadratic (DSPy spends 30 s on
//! 80 kB of `{"k": "v, ` repeated); past the budget the input is reported as unreadable instead.

use super::py::{Py, dict_set};
use super::text::is_py_space;
use std::cell::Cell;
use std::collections::HashMap;

/// The most work (characters scanned plus parser steps) one repair may take: well under a
/// tenth of a second in a release build.
const MAX_WORK: u64 = 40_000_000;

/// Deepest container nesting read before giving up (Python's recursion limit hits a little
/// above this).
const MAX_NESTING: usize = 200;

/// Deepest recursion of the value parser by any path (each container level is one, so this
/// leaves room for [`MAX_NESTING`] containers and comments or fences between them).
const MAX_VALUE_DEPTH: usize = 2 * MAX_NESTING;

const DELIMS: [char; 4] = ['"', '\'', '“', '”'];
const LOW_SMART_QUOTE_SENTINEL: char = '\0';

fn is_delim(c: Option<char>) -> bool {
    c.is_some_and(|c| DELIMS.contains(&c))
}

/// Python's `str.isalpha()` for one character: the letter categories (L*). Rust's
/// `char::is_alphabetic` also counts Other_Alphabetic (combining marks such as U+0A47, Roman
/// numerals, circled letters), which Python does not. Computed as XID_Start without numbers and
/// the Other_ID_Start characters, plus the letters NFKC closure keeps out of XID_Start (checked
/// against Python 3.11 over every code point).
fn is_alpha(c: char) -> bool {
    const NOT_LETTERS: [char; 6] = [
        '\u{1885}', '\u{1886}', '\u{2118}', '\u{212E}', '\u{309B}', '\u{309C}',
    ];
    const LETTERS: [char; 22] = [
        '\u{37A}', '\u{E33}', '\u{EB3}', '\u{2E2F}', '\u{FC5E}', '\u{FC5F}', '\u{FC60}',
        '\u{FC61}', '\u{FC62}', '\u{FC63}', '\u{FDFA}', '\u{FDFB}', '\u{FE70}', '\u{FE72}',
        '\u{FE74}', '\u{FE76}', '\u{FE78}', '\u{FE7A}', '\u{FE7C}', '\u{FE7E}', '\u{FF9E}',
        '\u{FF9F}',
    ];
    (unicode_ident::is_xid_start(c) && !c.is_numeric() && !NOT_LETTERS.contains(&c))
        || LETTERS.contains(&c)
}

/// Python's `str.isdigit()` (approximated for non-ASCII by Unicode's numeric property).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// Python's `str.isalnum()` for one character: a letter or a number (see [`is_alpha`]).
fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_numeric()
}

/// `json_repair.loads(text)`. `Err` when the input nests too deeply (Python raises
/// `ValueError` there as well).
pub fn loads(text: &str) -> Result<Py, String> {
    let chars: Vec<char> = text.chars().collect();
    if let Some(v) = strict::loads(&chars) {
        return Ok(v);
    }
    let mut parser = Parser::new(chars);
    let value = parser.parse_top_level();
    if parser.failed {
        return Err("the JSON is too deeply nested or too irregular to repair".to_string());
    }
    Ok(value)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ctx {
    ObjectKey,
    ObjectValue,
    Array,
}

/// What `parse_string` found before scanning: a finished value, or the scan state.
enum Entry {
    Done(Py),
    Scan(Box<StrState>),
}

#[derive(Default)]
struct StrState {
    missing_quotes: bool,
    doubled_quotes: bool,
    lstring_delimiter: char,
    /// The closing delimiter, then one sentinel per open low smart quote (`„`) span.
    rstring_delimiter: Vec<char>,
    acc: Vec<char>,
    unmatched_delimiter: bool,
    pending_inline_container: bool,
    inline_container_stack: Vec<char>,
    object_value_has_no_future_delimiter: bool,
    lookahead_cache: HashMap<Vec<char>, (isize, Option<isize>)>,
    object_value_unmatched_opening_braces: usize,
    regex_character_class_start: Option<usize>,
}

impl StrState {
    fn new() -> Self {
        StrState {
            lstring_delimiter: '"',
            rstring_delimiter: vec!['"'],
            ..StrState::default()
        }
    }

    fn outer(&self) -> char {
        self.rstring_delimiter[0]
    }

    fn active(&self) -> char {
        *self.rstring_delimiter.last().unwrap_or(&'"')
    }

    fn in_low_smart_quote_span(&self) -> bool {
        self.active() == LOW_SMART_QUOTE_SENTINEL
    }

    fn last(&self) -> Option<char> {
        self.acc.last().copied()
    }

    fn append(&mut self, content: &[char]) {
        let start = self.acc.len();
        self.acc.extend_from_slice(content);
        for (offset, &c) in content.iter().enumerate() {
            match c {
                '{' => self.object_value_unmatched_opening_braces += 1,
                '}' if self.object_value_unmatched_opening_braces > 0 => {
                    self.object_value_unmatched_opening_braces -= 1;
                }
                '[' => self.regex_character_class_start = Some(start + offset + 1),
                ']' => self.regex_character_class_start = None,
                _ => {}
            }
        }
    }

    fn replace_trailing_backslash(&mut self, content: &[char]) {
        self.acc.pop();
        self.append(content);
    }
}

enum Comma {
    Container,
    Member,
    Str,
    StrNoFutureDelimiter,
}

struct Parser {
    s: Vec<char>,
    index: isize,
    context: Vec<Ctx>,
    deferred: Vec<Ctx>,
    has_tried_valid_json_suffix: bool,
    depth: usize,
    /// Current recursion of [`Parser::parse_json`].
    value_depth: usize,
    /// Work done so far (see [`MAX_WORK`]).
    work: Cell<u64>,
    limit: u64,
    failed: bool,
}

impl Parser {
    fn new(s: Vec<char>) -> Self {
        let n = s.len() as u64;
        let limit = n.saturating_mul(n).max(64 * n + 100_000).min(MAX_WORK);
        Parser {
            s,
            index: 0,
            context: Vec::new(),
            deferred: Vec::new(),
            has_tried_valid_json_suffix: false,
            depth: 0,
            value_depth: 0,
            work: Cell::new(0),
            limit,
            failed: false,
        }
    }

    /// Records `amount` units of work.
    fn charge(&self, amount: usize) {
        self.work.set(self.work.get().saturating_add(amount as u64));
    }

    fn len(&self) -> isize {
        self.s.len() as isize
    }

    /// Spends one step; `false` once the work budget is gone (the parse then winds down).
    fn step(&mut self) -> bool {
        if self.failed || self.work.get() > self.limit {
            self.failed = true;
            return false;
        }
        self.charge(1);
        true
    }

    /// `json_str[pos]` with Python's indexing (negative positions count from the end).
    fn at(&self, pos: isize) -> Option<char> {
        let n = self.len();
        let p = if pos < 0 { pos + n } else { pos };
        if p < 0 || p >= n {
            None
        } else {
            Some(self.s[p as usize])
        }
    }

    fn get(&self, count: isize) -> Option<char> {
        self.at(self.index + count)
    }

    fn cur(&self) -> Option<Ctx> {
        self.context.last().copied()
    }

    fn ctx_empty(&self) -> bool {
        self.context.is_empty()
    }

    fn in_ctx(&self, c: Ctx) -> bool {
        self.context.contains(&c)
    }

    fn skip_whitespaces(&mut self) {
        while let Some(c) = self.get(0) {
            if !is_py_space(c) {
                break;
            }
            self.index += 1;
        }
    }

    fn skip_whitespace_and_comments(&mut self) {
        loop {
            self.skip_whitespaces();
            let c = self.get(0);
            if c != Some('#') && !(c == Some('/') && matches!(self.get(1), Some('/' | '*'))) {
                return;
            }
            if !self.step() {
                return;
            }
            self.skip_comment();
        }
    }

    /// The offset of the first non-whitespace character from `index + idx` (stepping backwards
    /// when asked), relative to `index`.
    fn scroll_whitespaces(&self, mut idx: isize, backwards: bool) -> isize {
        let step = if backwards { -1 } else { 1 };
        let Some(mut c) = self.at(self.index + idx) else {
            return idx;
        };
        while self.index + idx >= 0 && is_py_space(c) {
            idx += step;
            self.charge(1);
            match self.at(self.index + idx) {
                Some(next) => c = next,
                None => return idx,
            }
        }
        idx
    }

    fn scroll(&self, idx: isize) -> isize {
        self.scroll_whitespaces(idx, false)
    }

    /// The offset of the next unescaped target at or after `index + idx` (or the distance to
    /// the end).
    fn skip_to(&self, targets: &[char], idx: isize) -> isize {
        let n = self.len();
        let start = self.index + idx;
        let mut i = start;
        let mut backslashes = 0usize;
        while i < n {
            let Some(ch) = self.at(i) else {
                i += 1;
                continue;
            };
            if ch == '\\' {
                backslashes += 1;
                i += 1;
                continue;
            }
            if targets.contains(&ch) && backslashes.is_multiple_of(2) {
                self.charge((i - start).unsigned_abs());
                return i - self.index;
            }
            backslashes = 0;
            i += 1;
        }
        self.charge((i - start).unsigned_abs());
        n - self.index
    }

    // ---- top level ---------------------------------------------------------------------

    fn parse_top_level(&mut self) -> Py {
        let first = self.parse_json();
        if self.index >= self.len() {
            return first;
        }
        let mut json = vec![first];
        while self.index < self.len() {
            if !self.step() {
                break;
            }
            self.context.clear();
            self.deferred.clear();
            let is_comma_separated = self.next_top_level_value_is_comma_separated();
            let j = self.parse_json();
            if j.truthy() {
                let last = json.last().unwrap_or(&Py::None);
                if !is_comma_separated && is_same_object(last, &j) || !last.truthy() {
                    json.pop();
                }
                json.push(j);
            } else {
                self.index += 1;
            }
        }
        if json.len() == 1 {
            json.pop().unwrap_or(Py::Str(String::new()))
        } else {
            Py::List(json)
        }
    }

    fn next_top_level_value_is_comma_separated(&self) -> bool {
        let idx = self.scroll(0);
        if self.get(idx) == Some(',') {
            return true;
        }
        let mut i = self.index - 1;
        while i >= 0 && self.at(i).is_some_and(is_py_space) {
            i -= 1;
        }
        i >= 0 && self.at(i) == Some(',')
    }

    fn initial_container_has_non_comma_trailing_content(&self) -> bool {
        if self.index != 0 {
            return true;
        }
        self.charge(self.s.len());
        let mut containers: Vec<char> = Vec::new();
        let mut in_string = false;
        let mut escaped = false;
        for (i, &c) in self.s.iter().enumerate() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
                continue;
            }
            match c {
                '"' => in_string = true,
                '{' | '[' => containers.push(c),
                '}' | ']' => {
                    let Some(open) = containers.pop() else {
                        return false;
                    };
                    if (open == '{') != (c == '}') {
                        return false;
                    }
                    if containers.is_empty() {
                        let mut t = i + 1;
                        while t < self.s.len() && is_py_space(self.s[t]) {
                            t += 1;
                        }
                        return t < self.s.len() && self.s[t] != ',';
                    }
                }
                _ => {}
            }
        }
        false
    }

    fn try_parse_valid_json_value(&mut self) -> Option<Py> {
        if self.has_tried_valid_json_suffix || !self.ctx_empty() {
            return None;
        }
        self.has_tried_valid_json_suffix = true;
        let start = usize::try_from(self.index).ok()?;
        let (value, end) = strict::raw_decode(&self.s[start.min(self.s.len())..])?;
        self.index += end as isize;
        Some(value)
    }

    fn try_parse_missing_opening_object(&mut self, delimiter: char) -> Option<Py> {
        if self.scroll(-self.index) != 0 {
            return None;
        }
        let offset = self.skip_to(&[delimiter], 1);
        self.get(offset)?;
        let offset = self.scroll(offset + 1);
        if self.get(offset) != Some(':') {
            return None;
        }
        let end_offset = self.scroll_whitespaces(self.len() - self.index - 1, true);
        if self.get(end_offset) != Some('}') {
            return None;
        }
        let mut candidate = Vec::with_capacity(self.s.len() + 1);
        candidate.push('{');
        candidate.extend_from_slice(&self.s);
        let (value, end) = strict::raw_decode(&candidate)?;
        if candidate[end..]
            .iter()
            .any(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            return None;
        }
        self.index = self.len();
        Some(value)
    }

    /// Every recursion of the repairing parser passes through here, whatever path led back
    /// (containers, comments, code fences, strings that turn out to be comments): past
    /// [`MAX_VALUE_DEPTH`] the input is reported as too deep, as Python's `RecursionError` is.
    fn parse_json(&mut self) -> Py {
        if self.value_depth >= MAX_VALUE_DEPTH || self.failed {
            self.failed = true;
            self.index = self.len();
            return Py::Str(String::new());
        }
        self.value_depth += 1;
        let value = self.parse_json_here();
        self.value_depth -= 1;
        value
    }

    fn parse_json_here(&mut self) -> Py {
        if !self.deferred.is_empty() {
            let deferred = std::mem::take(&mut self.deferred);
            self.context.extend(deferred.iter().copied());
            let value = self.parse_json();
            for _ in &deferred {
                self.context.pop();
            }
            return value;
        }
        let mut check_initial_quote = self.index == 0 && self.ctx_empty();
        loop {
            if !self.step() {
                return Py::Str(String::new());
            }
            let Some(c) = self.get(0) else {
                return Py::Str(String::new());
            };
            if (c == '{' || c == '[')
                && self.initial_container_has_non_comma_trailing_content()
                && let Some(v) = self.try_parse_valid_json_value()
            {
                return v;
            }
            if c == '{' {
                self.index += 1;
                return self.nested(Self::parse_object);
            }
            if c == '[' {
                self.index += 1;
                return self.nested(|p| Py::List(p.parse_array(']')));
            }
            if c == '(' {
                if !self.ctx_empty() || self.top_level_parenthesized_can_start_value() {
                    return self.nested(Self::parse_parenthesized);
                }
                self.index += 1;
                continue;
            }
            if !self.ctx_empty() && (DELIMS.contains(&c) || is_alpha(c)) {
                return self.parse_string();
            }
            if !self.ctx_empty() && (is_digit(c) || c == '-' || c == '.') {
                return self.parse_number();
            }
            if c == '#' || c == '/' {
                return self.parse_comment();
            }
            if DELIMS.contains(&c) && check_initial_quote {
                check_initial_quote = false;
                if let Some(v) = self.try_parse_missing_opening_object(c) {
                    return v;
                }
            }
            self.index += 1;
        }
    }

    /// Runs a container parser one level deeper, giving up past [`MAX_NESTING`].
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Py) -> Py {
        if self.depth >= MAX_NESTING || self.failed {
            self.failed = true;
            self.index = self.len();
            return Py::Str(String::new());
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    // ---- comments ----------------------------------------------------------------------

    fn skip_comment(&mut self) {
        let c = self.get(0);
        if c == Some('#') || (c == Some('/') && self.get(1) == Some('/')) {
            let mut terminators = vec!['\n', '\r'];
            if c == Some('#') {
                if self.in_ctx(Ctx::Array) {
                    terminators.push(']');
                }
                if self.in_ctx(Ctx::ObjectValue) {
                    terminators.push('}');
                }
                if self.in_ctx(Ctx::ObjectKey) {
                    terminators.push(':');
                }
            }
            while let Some(ch) = self.get(0) {
                if terminators.contains(&ch) {
                    break;
                }
                self.index += 1;
            }
        } else if c == Some('/') && self.get(1) == Some('*') {
            self.index += 2;
            let mut prev = '\0';
            let mut seen = 0usize;
            while let Some(ch) = self.get(0) {
                self.index += 1;
                seen += 1;
                // The comment text starts with `/*`, so `/*/` already ends it.
                if ch == '/' && (prev == '*' || seen == 1) {
                    break;
                }
                prev = ch;
            }
        } else if c == Some('/') {
            self.index += 1;
        }
    }

    fn parse_comment(&mut self) -> Py {
        loop {
            if !self.step() {
                return Py::Str(String::new());
            }
            self.skip_comment();
            if !self.ctx_empty() {
                return Py::Str(String::new());
            }
            self.skip_whitespaces();
            if !matches!(self.get(0), Some('#' | '/')) {
                // Python recurses here too (parse_comment → parse_json → parse_comment on
                // every `/`), so a long run of them is as deep as nested containers.
                return self.nested(Self::parse_json);
            }
        }
    }

    // ---- numbers -----------------------------------------------------------------------

    fn parse_number(&mut self) -> Py {
        let start = self.index;
        let mut number: Vec<char> = Vec::new();
        let is_array = self.cur() == Some(Ctx::Array);
        while let Some(c) = self.get(0) {
            let ok = ("0123456789-.eE/,_".contains(c)
                || (c == '+' && matches!(number.last(), Some('e' | 'E'))))
                && (!is_array || c != ',');
            if !ok {
                break;
            }
            if c != '_' {
                number.push(c);
            }
            self.index += 1;
        }
        if self.get(0).is_some_and(is_alpha) {
            self.index = start;
            return self.parse_string();
        }
        if number.last().is_some_and(|c| "+-eE/,".contains(*c)) {
            number.pop();
            self.index -= 1;
        }
        let text: String = number.iter().collect();
        if text.contains(',') {
            return Py::Str(text);
        }
        if text.contains(['.', 'e', 'E']) {
            return match python_float(&text) {
                Some(f) => Py::Float(f),
                None => Py::Str(text),
            };
        }
        python_int(&text).unwrap_or(Py::Str(text))
    }

    // ---- arrays and tuples -------------------------------------------------------------

    fn parse_array(&mut self, closing: char) -> Vec<Py> {
        let array_is_object_value = self.cur() == Some(Ctx::ObjectValue);
        let mut closed_before_parent_member = false;
        let mut arr: Vec<Py> = Vec::new();
        self.context.push(Ctx::Array);
        loop {
            if !self.step() {
                break;
            }
            self.skip_whitespace_and_comments();
            let c = self.get(0);
            let Some(c) = c.filter(|&c| c != closing && c != '}') else {
                break;
            };
            if c == ',' {
                self.index += 1;
                continue;
            }
            let value = if DELIMS.contains(&c) {
                let i = self.skip_to(&[c], 1);
                let i = self.scroll(i + 1);
                if self.get(i) == Some(':') {
                    if array_is_object_value
                        && !arr.is_empty()
                        && arr.iter().all(|x| !matches!(x, Py::Dict(_) | Py::List(_)))
                    {
                        closed_before_parent_member = true;
                        break;
                    }
                    self.nested(Self::parse_object)
                } else {
                    self.parse_string()
                }
            } else {
                self.parse_json()
            };
            let strictly_empty = match &value {
                Py::Str(s) => s.is_empty(),
                Py::List(v) => v.is_empty(),
                Py::Dict(d) => d.is_empty(),
                _ => false,
            };
            let next = self.get(0);
            if strictly_empty && next != Some(closing) && next != Some(',') {
                self.index += 1;
            } else if matches!(&value, Py::Str(s) if s == "...") && self.get(-1) == Some('.') {
                // A stray `...` is dropped.
            } else {
                arr.push(value);
            }
        }
        if !closed_before_parent_member {
            self.index += 1;
        }
        self.context.pop();
        arr
    }

    fn parse_parenthesized(&mut self) -> Py {
        let explicit_tuple = self.parenthesized_is_explicit_tuple();
        self.index += 1;
        let mut values = self.parse_array(')');
        if explicit_tuple || values.len() != 1 {
            Py::List(values)
        } else {
            values.pop().unwrap_or(Py::Str(String::new()))
        }
    }

    fn parenthesized_is_explicit_tuple(&self) -> bool {
        let n = self.len();
        let mut i = self.index + 1;
        let (mut paren, mut square, mut brace) = (0usize, 0usize, 0usize);
        let mut in_quote: Option<char> = None;
        let mut backslashes = 0usize;
        let mut saw_content = false;
        while i < n {
            self.charge(1);
            let Some(ch) = self.at(i) else { break };
            if ch == '\\' {
                backslashes += 1;
                i += 1;
                continue;
            }
            if let Some(q) = in_quote {
                if ch == q && backslashes.is_multiple_of(2) {
                    in_quote = None;
                }
                backslashes = 0;
                i += 1;
                continue;
            }
            if DELIMS.contains(&ch) && backslashes.is_multiple_of(2) {
                in_quote = Some(ch);
                saw_content = saw_content || (paren == 0 && square == 0 && brace == 0);
                backslashes = 0;
                i += 1;
                continue;
            }
            backslashes = 0;
            if !is_py_space(ch) && ch != ',' && ch != ')' && paren == 0 && square == 0 && brace == 0
            {
                saw_content = true;
            }
            match ch {
                '(' => paren += 1,
                ')' => {
                    if paren == 0 && square == 0 && brace == 0 {
                        return !saw_content;
                    }
                    paren = paren.saturating_sub(1);
                }
                '[' => square += 1,
                ']' if square > 0 => square -= 1,
                '{' => brace += 1,
                '}' if brace > 0 => brace -= 1,
                ',' if paren == 0 && square == 0 && brace == 0 => return true,
                _ => {}
            }
            i += 1;
        }
        !saw_content
    }

    fn top_level_parenthesized_can_start_value(&self) -> bool {
        let mut i = self.index - 1;
        while i >= 0 {
            let Some(ch) = self.at(i) else { break };
            if ch == '\n' || ch == '\r' {
                break;
            }
            if !is_py_space(ch) {
                return false;
            }
            i -= 1;
        }
        let idx = self.scroll(1);
        let Some(first) = self.get(idx) else {
            return false;
        };
        let head: String = (0..5)
            .filter_map(|k| self.get(idx + k))
            .collect::<String>()
            .to_lowercase();
        let head4: String = head.chars().take(4).collect();
        let head5: String = head.chars().take(5).collect();
        if !matches!(first, ')' | '{' | '[' | '(')
            && !DELIMS.contains(&first)
            && !is_digit(first)
            && first != '-'
            && first != '.'
            && !matches!(head4.as_str(), "true" | "null" | "none")
            && head5 != "false"
        {
            return false;
        }
        let n = self.len();
        let mut i = self.index + 1;
        let (mut paren, mut square, mut brace) = (0isize, 0usize, 0usize);
        let mut in_quote: Option<char> = None;
        let mut backslashes = 0usize;
        while i < n {
            self.charge(1);
            let Some(ch) = self.at(i) else { break };
            if ch == '\\' {
                backslashes += 1;
                i += 1;
                continue;
            }
            if let Some(q) = in_quote {
                if ch == q && backslashes.is_multiple_of(2) {
                    in_quote = None;
                }
                backslashes = 0;
                i += 1;
                continue;
            }
            if DELIMS.contains(&ch) && backslashes.is_multiple_of(2) {
                in_quote = Some(ch);
                backslashes = 0;
                i += 1;
                continue;
            }
            backslashes = 0;
            match ch {
                '(' => paren += 1,
                ')' => {
                    if paren == 0 && square == 0 && brace == 0 {
                        i += 1;
                        while i < n {
                            let Some(t) = self.at(i) else { break };
                            if t == '\n' || t == '\r' {
                                return true;
                            }
                            if !is_py_space(t) {
                                return false;
                            }
                            i += 1;
                        }
                        return true;
                    }
                    paren -= 1;
                }
                '[' => square += 1,
                ']' if square > 0 => square -= 1,
                '{' => brace += 1,
                '}' if brace > 0 => brace -= 1,
                _ => {}
            }
            i += 1;
        }
        true
    }

    // ---- objects -----------------------------------------------------------------------

    fn parse_object(&mut self) -> Py {
        let mut obj: Vec<(Py, Py)> = Vec::new();
        let start_index = self.index;
        let parsing_object_value = self.cur() == Some(Ctx::ObjectValue);
        loop {
            if !self.step() {
                break;
            }
            self.skip_whitespace_and_comments();
            match self.get(0) {
                None | Some('}') => break,
                Some(',') => {
                    self.index += 1;
                    continue;
                }
                Some(':') => self.index += 1,
                _ => {}
            }
            let (key, rollback_index) = self.parse_object_key(&mut obj);
            if self.in_ctx(Ctx::Array)
                && Py::dict_get(&obj, &key).is_some()
                && !parsing_object_value
                && self.should_split_duplicate_object(rollback_index)
            {
                self.index = rollback_index - 1;
                let at = (self.index + 1).clamp(0, self.len()) as usize;
                self.s.insert(at, '{');
                break;
            }
            self.skip_whitespace_and_comments();
            if matches!(self.get(0), None | Some('}')) {
                continue;
            }
            self.index += 1;
            let value = self.parse_object_value();
            dict_set(&mut obj, Py::Str(key), value);
            if matches!(self.get(0), Some(',' | '\'' | '"')) {
                self.index += 1;
            }
            if self.get(0) == Some(']') && self.in_ctx(Ctx::Array) {
                self.index -= 1;
                break;
            }
        }
        self.index += 1;
        if self.failed {
            // The parse is being abandoned; skip the repairs (they rescan the input).
            return Py::Dict(obj);
        }
        if let Some(v) = self.repair_empty_object_result(&obj, start_index) {
            return v;
        }
        self.complete_object_parse(obj)
    }

    fn parse_object_key(&mut self, obj: &mut [(Py, Py)]) -> (String, isize) {
        let mut key = String::new();
        let mut rollback_index = self.index;
        self.context.push(Ctx::ObjectKey);
        while self.get(0).is_some() {
            if !self.step() {
                break;
            }
            rollback_index = self.index;
            if self.get(0) == Some('[')
                && key.is_empty()
                && self.merge_object_array_continuation(obj)
            {
                continue;
            }
            key = match self.parse_string() {
                Py::Str(s) => s,
                other => super::py::py_str(&other),
            };
            if key.is_empty() {
                self.skip_whitespace_and_comments();
            }
            if !key.is_empty() || matches!(self.get(0), Some(':' | '}')) {
                break;
            }
        }
        self.context.pop();
        (key, rollback_index)
    }

    fn merge_object_array_continuation(&mut self, obj: &mut [(Py, Py)]) -> bool {
        let Some((Py::Str(prev_key), Py::List(_))) = obj.last() else {
            return false;
        };
        if prev_key.is_empty() {
            return false;
        }
        self.index += 1;
        let new_array = self.nested(|p| Py::List(p.parse_array(']')));
        let Py::List(new_array) = new_array else {
            return true;
        };
        let Some((_, Py::List(prev))) = obj.last_mut() else {
            return true;
        };
        let lengths: Vec<usize> = prev
            .iter()
            .filter_map(|x| match x {
                Py::List(v) => Some(v.len()),
                _ => None,
            })
            .collect();
        let expected = match lengths.first() {
            Some(&first) if lengths.iter().all(|&l| l == first) => Some(first),
            _ => None,
        };
        match expected {
            Some(expected) if expected > 0 => {
                let mut tail = Vec::new();
                while prev.last().is_some_and(|x| !matches!(x, Py::List(_))) {
                    if let Some(x) = prev.pop() {
                        tail.push(x);
                    }
                }
                if !tail.is_empty() {
                    tail.reverse();
                    if tail.len() % expected == 0 {
                        for chunk in tail.chunks(expected) {
                            prev.push(Py::List(chunk.to_vec()));
                        }
                    } else {
                        prev.extend(tail);
                    }
                }
                if !new_array.is_empty() {
                    if new_array.iter().all(|x| matches!(x, Py::List(_))) {
                        prev.extend(new_array);
                    } else {
                        prev.push(Py::List(new_array));
                    }
                }
            }
            _ => {
                if new_array.len() == 1 && matches!(new_array[0], Py::List(_)) {
                    if let Some(Py::List(inner)) = new_array.into_iter().next() {
                        prev.extend(inner);
                    }
                } else {
                    prev.extend(new_array);
                }
            }
        }
        self.skip_whitespace_and_comments();
        if self.get(0) == Some(',') {
            self.index += 1;
        }
        self.skip_whitespace_and_comments();
        true
    }

    fn should_split_duplicate_object(&self, rollback_index: isize) -> bool {
        let mut lookback = rollback_index - self.index - 1;
        let mut prev = self.get(lookback);
        let mut guard = 0usize;
        while prev.is_some_and(is_py_space) && guard <= self.s.len() {
            lookback -= 1;
            prev = self.get(lookback);
            guard += 1;
        }
        let key_start = self.get(rollback_index - self.index);
        let next = self.get(self.scroll(0));
        !(is_delim(key_start) && prev == Some(',') && next == Some(':'))
    }

    fn parse_object_value(&mut self) -> Py {
        self.context.push(Ctx::ObjectValue);
        self.skip_whitespace_and_comments();
        let value = if matches!(self.get(0), Some(',' | '}')) {
            Py::Str(String::new())
        } else {
            self.parse_json()
        };
        self.context.pop();
        value
    }

    fn repair_empty_object_result(&mut self, obj: &[(Py, Py)], start_index: isize) -> Option<Py> {
        if !obj.is_empty() || self.index - start_index <= 2 {
            return None;
        }
        let body = py_slice(&self.s, start_index, self.index - 1);
        if self.get(-1) == Some('}')
            && strip_comments_for_classification(&body)
                .iter()
                .all(|&c| is_py_space(c))
        {
            return None;
        }
        match self.classify_empty_object_repair(start_index) {
            EmptyRepair::Keep => None,
            EmptyRepair::Object(normalized) => {
                let end_index = self.index + 1;
                let mut s = py_slice(&self.s, 0, start_index - 1);
                s.extend(normalized);
                s.extend(py_slice(&self.s, end_index, self.len()));
                self.s = s;
                self.index = start_index;
                self.context.push(Ctx::ObjectKey);
                let v = self.nested(Self::parse_object);
                self.context.pop();
                self.deferred.push(Ctx::ObjectKey);
                Some(v)
            }
            EmptyRepair::Array => {
                self.index = start_index;
                self.context.push(Ctx::ObjectKey);
                let v = self.nested(|p| Py::List(p.parse_array(']')));
                self.context.pop();
                self.deferred.push(Ctx::ObjectKey);
                Some(v)
            }
        }
    }

    fn classify_empty_object_repair(&self, start_index: isize) -> EmptyRepair {
        let attempted = py_slice(&self.s, start_index - 1, self.index + 1);
        let mut body: &[char] = attempted.get(1..).unwrap_or(&[]);
        if body.last() == Some(&'}') {
            body = &body[..body.len() - 1];
        }
        let lead = body.iter().take_while(|&&c| is_py_space(c)).count();
        let body = &body[lead..];
        if body.is_empty() {
            return EmptyRepair::Keep;
        }
        let starts = |p: &[char]| body.starts_with(p);
        let contains = |p: &[char]| body.windows(p.len()).any(|w| w == p);
        if (starts(&['\\', '"']) && contains(&['\\', '"', ':']))
            || (starts(&['\\', '\'']) && contains(&['\\', '\'', ':']))
        {
            let text: String = attempted.iter().collect();
            let normalized = text.replace("\\\"", "\"").replace("\\'", "'");
            return EmptyRepair::Object(normalized.chars().collect());
        }
        let stripped = strip_comments_for_classification(body);
        let lead = stripped.iter().take_while(|&&c| is_py_space(c)).count();
        let body = &stripped[lead..];
        if body.is_empty() {
            return EmptyRepair::Keep;
        }
        let mut in_quote: Option<char> = None;
        let mut backslashes = 0usize;
        for &c in body {
            if c == '\\' {
                backslashes += 1;
                continue;
            }
            if let Some(q) = in_quote {
                if c == q && backslashes.is_multiple_of(2) {
                    in_quote = None;
                }
            } else if DELIMS.contains(&c) && backslashes.is_multiple_of(2) {
                in_quote = Some(c);
            } else if c == ':' && backslashes.is_multiple_of(2) {
                return EmptyRepair::Keep;
            }
            backslashes = 0;
        }
        EmptyRepair::Array
    }

    fn complete_object_parse(&mut self, mut obj: Vec<(Py, Py)>) -> Py {
        if !self.ctx_empty() {
            if self.get(0) == Some('}')
                && !matches!(self.cur(), Some(Ctx::ObjectKey | Ctx::ObjectValue))
            {
                self.index += 1;
            }
            return Py::Dict(obj);
        }
        self.skip_whitespaces();
        if self.get(0) == Some(',') {
            self.index += 1;
            self.skip_whitespaces();
            if is_delim(self.get(0))
                && let Py::Dict(more) = self.nested(Self::parse_object)
            {
                for (k, v) in more {
                    dict_set(&mut obj, k, v);
                }
            }
        }
        Py::Dict(obj)
    }

    // ---- strings -----------------------------------------------------------------------

    fn parse_string(&mut self) -> Py {
        match self.prepare_string_entry() {
            Entry::Done(v) => v,
            Entry::Scan(mut state) => {
                let c = self.scan_string_body(&mut state);
                self.finalize_string_result(&mut state, c)
            }
        }
    }

    fn try_parse_simple_quoted_string(&mut self) -> Option<String> {
        if self.get(0) != Some('"') {
            return None;
        }
        let start = (self.index + 1) as usize;
        let rel_end = self.s.get(start..)?.iter().position(|&c| c == '"')?;
        let end = start + rel_end;
        let value = &self.s[start..end];
        if value.iter().any(|&c| matches!(c, '\\' | '\n' | '\r')) {
            return None;
        }
        let mut next = end + 1;
        while next < self.s.len() && is_py_space(self.s[next]) {
            next += 1;
        }
        let next_char = self.s.get(next).copied();
        let ok = match self.cur() {
            Some(Ctx::ObjectKey) => next_char == Some(':'),
            Some(Ctx::ObjectValue) => matches!(next_char, None | Some(',' | '}')),
            Some(Ctx::Array) => matches!(next_char, None | Some(',' | ']')),
            None => next_char.is_none(),
        };
        if !ok {
            return None;
        }
        let value: String = value.iter().collect();
        self.index = end as isize + 1;
        Some(value)
    }

    fn parse_boolean_or_null(&mut self) -> Option<Py> {
        let start = self.index;
        let first = self.get(0).map(lower)?;
        for (literal, value) in [
            ("true", Py::Bool(true)),
            ("false", Py::Bool(false)),
            ("null", Py::None),
            ("none", Py::None),
        ] {
            if !first.starts_with(&literal[..1]) || first.chars().count() != 1 {
                continue;
            }
            self.index = start;
            let mut matched = true;
            for k in 0..literal.len() {
                if self.get(0).map(lower).as_deref() != Some(&literal[k..=k]) {
                    matched = false;
                    break;
                }
                self.index += 1;
            }
            if matched {
                let next = self.get(0);
                if next.is_none_or(|c| is_py_space(c) || matches!(c, ',' | ')' | ']' | '}')) {
                    return Some(value);
                }
            }
        }
        self.index = start;
        None
    }

    fn parse_json_llm_block(&mut self) -> Option<Py> {
        let fence: Vec<char> = "```json".chars().collect();
        let here = self.index.max(0) as usize;
        if self.s.get(here..here + 7) == Some(&fence[..]) {
            let i = self.skip_to(&['`'], 7);
            let at = (self.index + i).max(0) as usize;
            if self.s.get(at..at + 3) == Some(&['`', '`', '`'][..]) {
                self.index += 7;
                return Some(self.parse_json());
            }
        }
        None
    }

    fn prepare_string_entry(&mut self) -> Entry {
        let mut c = self.get(0);
        if matches!(c, Some('#' | '/')) {
            return Entry::Done(self.parse_comment());
        }
        while let Some(ch) = c {
            if DELIMS.contains(&ch) || is_alnum(ch) {
                break;
            }
            self.index += 1;
            c = self.get(0);
        }
        let Some(c) = c else {
            return Entry::Done(Py::Str(String::new()));
        };
        if let Some(v) = self.try_parse_simple_quoted_string() {
            return Entry::Done(Py::Str(v));
        }
        let mut st = StrState::new();
        if c == '\'' {
            st.lstring_delimiter = '\'';
            st.rstring_delimiter = vec!['\''];
        } else if c == '“' {
            st.lstring_delimiter = '“';
            st.rstring_delimiter = vec!['”'];
        } else if is_alnum(c) {
            if matches!(lower(c).as_str(), "t" | "f" | "n")
                && self.cur() != Some(Ctx::ObjectKey)
                && let Some(v) = self.parse_boolean_or_null()
            {
                return Entry::Done(v);
            }
            st.missing_quotes = true;
        }
        if !st.missing_quotes {
            self.index += 1;
        }
        if self.get(0) == Some('`')
            && let Some(v) = self.parse_json_llm_block()
        {
            return Entry::Done(v);
        }
        let l = st.lstring_delimiter;
        let r = st.outer();
        if self.get(0) == Some(l) {
            let next = self.get(1);
            if (self.cur() == Some(Ctx::ObjectKey) && next == Some(':'))
                || (self.cur() == Some(Ctx::ObjectValue) && matches!(next, Some(',' | '}')))
                || (self.cur() == Some(Ctx::Array) && matches!(next, Some(',' | ']')))
            {
                self.index += 1;
                return Entry::Done(Py::Str(String::new()));
            }
            if next == Some(l) {
                return Entry::Done(Py::Str(String::new()));
            }
            let i = self.skip_to(&[r], 1);
            if self.get(i + 1) == Some(r) {
                st.doubled_quotes = true;
                self.index += 1;
            } else {
                if self.get(i) == Some(r) {
                    let outer_quote_idx = self.skip_to(&[r], i + 1);
                    let after = self.get(self.scroll(outer_quote_idx + 1));
                    if self.cur() == Some(Ctx::ObjectValue)
                        && !self.only_whitespace_until(i)
                        && self.get(outer_quote_idx) == Some(r)
                        && matches!(after, None | Some(',' | '}'))
                    {
                        st.append(&[l]);
                        st.unmatched_delimiter = true;
                        self.index += 1;
                        return Entry::Scan(Box::new(st));
                    }
                }
                let i = self.scroll(1);
                let next_c = self.get(i);
                if is_delim(next_c) || matches!(next_c, Some('{' | '[')) {
                    self.index += 1;
                    return Entry::Done(Py::Str(String::new()));
                }
                if !matches!(next_c, Some(',' | ']' | '}')) {
                    self.index += 1;
                }
            }
        }
        Entry::Scan(Box::new(st))
    }

    /// `_append_literal_char`: keeps `c` in the string, moves on, returns the next character.
    fn append_literal(&mut self, st: &mut StrState, c: char) -> Option<char> {
        st.append(&[c]);
        self.index += 1;
        self.get(0)
    }

    fn cached_skip_to(&self, st: &mut StrState, targets: &[char], idx: isize) -> isize {
        let start_index = self.index + idx;
        if let Some(&(cached_start, cached_match)) = st.lookahead_cache.get(targets) {
            match cached_match {
                None if start_index >= cached_start => return self.len() - self.index,
                Some(m) if cached_start <= start_index && start_index <= m => {
                    return m - self.index;
                }
                _ => {}
            }
        }
        let offset = self.skip_to(targets, idx);
        if self.get(offset).is_none() {
            st.lookahead_cache
                .insert(targets.to_vec(), (start_index, None));
            return offset;
        }
        let match_index = self.index + offset;
        if match_index == 0 || self.at(match_index - 1) != Some('\\') {
            st.lookahead_cache
                .insert(targets.to_vec(), (start_index, Some(match_index)));
        }
        offset
    }

    fn only_whitespace_until(&self, end: isize) -> bool {
        self.charge(end.unsigned_abs());
        (1..end).all(|j| self.get(j).is_none_or(is_py_space))
    }

    fn bare_key_is_followed_by_colon(&self, mut key_idx: isize) -> bool {
        match self.get(key_idx) {
            Some(c) if is_alnum(c) || c == '_' => {}
            _ => return false,
        }
        let start = key_idx;
        while let Some(c) = self.get(key_idx) {
            if !(is_alnum(c) || c == '_' || c == '-') {
                break;
            }
            key_idx += 1;
        }
        self.charge((key_idx - start).unsigned_abs());
        let key_idx = self.scroll(key_idx);
        self.get(key_idx) == Some(':')
    }

    fn scroll_comment_prefixed_member_start(&self, idx: isize) -> isize {
        let mut idx = self.scroll(idx);
        loop {
            self.charge(1);
            let c = self.get(idx);
            if c == Some('#') {
                while self.get(idx).is_some_and(|c| c != '\n' && c != '\r') {
                    idx += 1;
                    self.charge(1);
                }
                idx = self.scroll(idx);
                continue;
            }
            if c == Some('/') {
                match self.get(idx + 1) {
                    Some('/') => {
                        idx += 2;
                        while self.get(idx).is_some_and(|c| c != '\n' && c != '\r') {
                            idx += 1;
                            self.charge(1);
                        }
                        idx = self.scroll(idx);
                        continue;
                    }
                    Some('*') => {
                        idx += 2;
                        loop {
                            match self.get(idx) {
                                None => return idx,
                                Some('*') if self.get(idx + 1) == Some('/') => {
                                    idx += 2;
                                    break;
                                }
                                _ => {
                                    idx += 1;
                                    self.charge(1);
                                }
                            }
                        }
                        idx = self.scroll(idx);
                        continue;
                    }
                    _ => {}
                }
            }
            return idx;
        }
    }

    fn object_member_starts_at(&self, idx: isize) -> bool {
        let Some(c) = self.get(idx) else {
            return false;
        };
        if c == '}' {
            return false;
        }
        if DELIMS.contains(&c) {
            let end = matching_delimiter(c);
            let key_end = self.skip_to(&[end], idx + 1);
            if self.get(key_end) != Some(end) {
                return false;
            }
            return self.get(self.scroll(key_end + 1)) == Some(':');
        }
        if is_alnum(c) || c == '_' {
            return self.bare_key_is_followed_by_colon(idx);
        }
        false
    }

    fn quoted_object_member_follows(&self, quote_idx: isize) -> bool {
        let comma = self.scroll(quote_idx + 1);
        if self.get(comma) != Some(',') {
            return false;
        }
        let next = self.scroll_comment_prefixed_member_start(comma + 1);
        self.object_member_starts_at(next)
    }

    fn post_fence_container_starts_next_member(&self, container_end: isize) -> bool {
        let after_idx = self.scroll(container_end);
        match self.get(after_idx) {
            None | Some('}') => return true,
            Some(',') => {}
            _ => return false,
        }
        let next = self.scroll_comment_prefixed_member_start(after_idx + 1);
        matches!(self.get(next), None | Some('}')) || self.object_member_starts_at(next)
    }

    fn starts_nested_inline_container(&self, idx: isize) -> bool {
        let opening = self.get(idx);
        let mut prev_idx = idx - 1;
        while prev_idx >= 0 {
            self.charge(1);
            let Some(prev) = self.get(prev_idx) else {
                return true;
            };
            if !is_py_space(prev) {
                if matches!(prev, '[' | '{' | '(') {
                    return true;
                }
                if prev != ',' && prev != ':' {
                    return false;
                }
                let next_idx = self.scroll(idx + 1);
                let next = self.get(next_idx);
                if matches!(opening, Some('[' | '(')) {
                    return matches!(
                        next,
                        Some(']' | ')' | '-' | '[' | '{' | '(' | 't' | 'f' | 'n')
                    ) || is_delim(next)
                        || next.is_some_and(is_digit);
                }
                if opening != Some('{') {
                    return false;
                }
                if next == Some('}') || is_delim(next) {
                    return true;
                }
                return prev == ':' && self.bare_key_is_followed_by_colon(next_idx);
            }
            prev_idx -= 1;
        }
        true
    }

    fn skip_inline_container(&self, idx: isize) -> Option<isize> {
        let Some(opening @ ('[' | '{' | '(')) = self.get(idx) else {
            return Some(idx);
        };
        let mut stack = vec![closer(opening)];
        let mut i = idx + 1;
        let mut guard = 0usize;
        while let Some(&top) = stack.last() {
            guard += 1;
            self.charge(1);
            if guard > 4 * self.s.len() + 16 || self.work.get() > self.limit {
                return None;
            }
            let c = self.get(i)?;
            if DELIMS.contains(&c) {
                let end = matching_delimiter(c);
                i = self.skip_to(&[end], i + 1);
                if self.get(i) != Some(end) {
                    return None;
                }
            } else if matches!(c, '[' | '{' | '(') && self.starts_nested_inline_container(i) {
                stack.push(closer(c));
            } else if c == top {
                stack.pop();
                if stack.is_empty() {
                    return Some(i + 1);
                }
            }
            i += 1;
        }
        None
    }

    fn brace_before_code_fence_belongs_to_string(
        &self,
        st: &mut StrState,
        fence_idx: isize,
    ) -> bool {
        let mut quote_search = fence_idx + 3;
        let next_content = self.scroll_comment_prefixed_member_start(quote_search);
        let mut keep = false;
        if matches!(self.get(next_content), Some('[' | '{' | '('))
            && let Some(end) = self.skip_inline_container(next_content)
        {
            if self.post_fence_container_starts_next_member(end) {
                return false;
            }
            keep = true;
            quote_search = end;
        }
        let outer = st.outer();
        let mut quote_idx = self.skip_to(&[outer], quote_search);
        while self.get(quote_idx) == Some(outer) {
            let after = self.get(self.scroll(quote_idx + 1));
            if matches!(after, None | Some(',' | '}' | ']')) {
                if keep {
                    st.pending_inline_container = true;
                }
                return true;
            }
            quote_idx = self.skip_to(&[outer], quote_idx + 1);
        }
        false
    }

    fn quote_belongs_to_regex_character_class(&self, st: &StrState) -> bool {
        let Some(start) = st.regex_character_class_start else {
            return false;
        };
        if st
            .acc
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .any(|&c| is_py_space(c))
        {
            return false;
        }
        let closing = self.skip_to(&[']'], 1);
        self.get(closing) == Some(']')
    }

    fn bare_member_has_recoverable_value(&self, st: &mut StrState, value_idx: isize) -> bool {
        let start = self.scroll(value_idx);
        let v = self.get(start);
        if is_delim(v) || matches!(v, Some('{' | '[' | '-')) || v.is_some_and(is_digit) {
            return true;
        }
        for literal in ["true", "false", "null"] {
            let matches = literal
                .chars()
                .enumerate()
                .all(|(k, ch)| self.get(start + k as isize) == Some(ch));
            if matches {
                let end = self.get(start + literal.len() as isize);
                if end.is_none_or(|c| is_py_space(c) || matches!(c, ',' | '}' | ']')) {
                    return true;
                }
            }
        }
        let end = self.cached_skip_to(st, &['"', '\'', '“', '”', '}'], start);
        self.get(end) == Some('}')
    }

    fn classify_object_value_comma(&self, st: &mut StrState) -> Comma {
        let next_idx = self.scroll(1);
        let next = self.get(next_idx);
        let Some(nc) = next else {
            return Comma::Member;
        };
        if nc == '}' {
            return Comma::Member;
        }
        if DELIMS.contains(&nc) {
            let key_end = self.skip_to(&[nc], next_idx + 1);
            if self.get(key_end).is_none() {
                return Comma::Str;
            }
            let key_end = self.scroll(key_end + 1);
            return if self.get(key_end) == Some(':') {
                Comma::Member
            } else {
                Comma::Str
            };
        }
        let scan_bare_key = |mut k: isize| {
            let start = k;
            while let Some(c) = self.get(k) {
                if !(is_alnum(c) || c == '_' || c == '-') {
                    break;
                }
                k += 1;
            }
            self.charge((k - start).unsigned_abs());
            self.scroll(k)
        };
        if nc == '`' {
            let k = scan_bare_key(next_idx + 1);
            return if self.get(k) == Some(':') {
                Comma::Member
            } else {
                Comma::Str
            };
        }
        if is_alnum(nc) || nc == '_' {
            let k = scan_bare_key(next_idx);
            if self.get(k) == Some(':') && self.bare_member_has_recoverable_value(st, k + 1) {
                return Comma::Member;
            }
        }
        if nc == '{' || nc == '[' {
            return Comma::Container;
        }
        let special_idx = self.cached_skip_to(st, &['"', '\'', '“', '”', '{', '['], next_idx);
        let Some(special) = self.get(special_idx) else {
            return Comma::StrNoFutureDelimiter;
        };
        if special == '{' || special == '[' {
            return Comma::Str;
        }
        let key_end = self.cached_skip_to(st, &[special], special_idx + 1);
        if self.get(key_end).is_none() {
            return Comma::Str;
        }
        let key_end = self.scroll(key_end + 1);
        if self.get(key_end) == Some(':') {
            Comma::Member
        } else {
            Comma::Str
        }
    }

    fn normalize_escape_sequence(&mut self, st: &mut StrState, c: char) -> (bool, Option<char>) {
        let active = st.active();
        if st.in_low_smart_quote_span() && c == '"' {
            st.replace_trailing_backslash(&['"']);
            st.rstring_delimiter.pop();
            self.index += 1;
            return (true, self.get(0));
        }
        if c == '\\' {
            let run_start = self.index - 1;
            let mut run_end = self.index + 1;
            while run_end < self.len() && self.at(run_end) == Some('\\') {
                run_end += 1;
            }
            let run_length = run_end - run_start;
            let next = self.get(run_end - self.index);
            let after = self.get(self.scroll(run_end - self.index + 1));
            if run_length % 2 == 0
                && (next != Some(active) || matches!(after, None | Some(',' | ':' | '}' | ']')))
            {
                let half = vec!['\\'; (run_length / 2) as usize];
                st.replace_trailing_backslash(&half);
                self.index = run_end;
                return (true, self.get(0));
            }
        }
        if c == active || matches!(c, 't' | 'n' | 'r' | 'b' | '\\') {
            let replacement = match c {
                't' => '\t',
                'n' => '\n',
                'r' => '\r',
                'b' => '\x08',
                other => other,
            };
            st.replace_trailing_backslash(&[replacement]);
            self.index += 1;
            let mut next = self.get(0);
            while let Some(n) = next {
                if !(st.last() == Some('\\') && (n == active || n == '\\')) {
                    break;
                }
                st.replace_trailing_backslash(&[n]);
                self.index += 1;
                next = self.get(0);
            }
            return (true, next);
        }
        if c == 'u' || c == 'x' {
            let num = if c == 'u' { 4 } else { 2 };
            let from = (self.index + 1).max(0) as usize;
            if let Some(hex) = self.s.get(from..from + num)
                && hex.iter().all(char::is_ascii_hexdigit)
            {
                let text: String = hex.iter().collect();
                let code = u32::from_str_radix(&text, 16).unwrap_or(0xFFFD);
                let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
                st.replace_trailing_backslash(&[ch]);
                self.index += 1 + num as isize;
                return (true, self.get(0));
            }
        } else if c == '„' || (DELIMS.contains(&c) && c != active) {
            st.replace_trailing_backslash(&[c]);
            self.index += 1;
            return (true, self.get(0));
        }
        (false, Some(c))
    }

    /// `_handle_right_delimiter_candidate`: `(handled, next char, stop)`.
    fn handle_right_delimiter_candidate(
        &mut self,
        st: &mut StrState,
        c: char,
    ) -> (bool, Option<char>, bool) {
        let outer = st.outer();
        if st.doubled_quotes && self.get(1) == Some(outer) {
            self.index += 1;
            return (true, Some(c), false);
        }
        if st.missing_quotes && self.cur() == Some(Ctx::ObjectValue) {
            let mut i = 1;
            let mut next = self.get(i);
            while let Some(n) = next {
                if n == outer || n == st.lstring_delimiter {
                    break;
                }
                i += 1;
                next = self.get(i);
            }
            if next.is_some() {
                i += 1;
                let i = self.scroll(i);
                if self.get(i) == Some(':') {
                    self.index -= 1;
                    return (false, self.get(0), true);
                }
            }
            return (false, Some(c), false);
        }
        if st.unmatched_delimiter {
            st.unmatched_delimiter = false;
            let next = self.append_literal(st, c);
            return (true, next, false);
        }
        let mut i: isize = 1;
        let mut next = self.get(i);
        let mut check_comma = true;
        while let Some(n) = next {
            if n == outer || n == st.lstring_delimiter {
                break;
            }
            if check_comma && is_alpha(n) {
                check_comma = false;
            }
            if (self.in_ctx(Ctx::ObjectKey) && matches!(n, ':' | '}'))
                || (self.in_ctx(Ctx::ObjectValue) && n == '}')
                || (self.in_ctx(Ctx::Array) && matches!(n, ']' | ','))
                || (check_comma && self.cur() == Some(Ctx::ObjectValue) && n == ',')
            {
                break;
            }
            i += 1;
            next = self.get(i);
        }
        if next == Some(',') && self.cur() == Some(Ctx::ObjectValue) {
            i += 1;
            i = self.skip_to(&[outer], i);
            i += 1;
            i = self.scroll(i);
            if matches!(self.get(i), Some('}' | ',')) {
                let next = self.append_literal(st, c);
                return (true, next, false);
            }
        } else if next == Some(outer) && self.get(i - 1) != Some('\\') {
            if self.only_whitespace_until(i)
                && !(self.cur() == Some(Ctx::ObjectValue) && self.quoted_object_member_follows(i))
            {
                return (false, Some(c), true);
            }
            match self.cur() {
                Some(Ctx::ObjectValue) => {
                    if self.quoted_object_member_follows(i) {
                        let next = self.append_literal(st, c);
                        return (true, next, false);
                    }
                    i = self.skip_to(&[outer], i + 1);
                    i += 1;
                    let mut n = self.get(i);
                    while let Some(ch) = n {
                        if ch == ':' {
                            break;
                        }
                        if matches!(ch, ',' | ']' | '}')
                            || (ch == outer && self.get(i - 1) != Some('\\'))
                        {
                            break;
                        }
                        i += 1;
                        n = self.get(i);
                    }
                    if n != Some(':') {
                        st.unmatched_delimiter = !st.unmatched_delimiter;
                        let next = self.append_literal(st, c);
                        return (true, next, false);
                    }
                }
                Some(Ctx::Array) => {
                    let mut even = next == Some(outer);
                    let mut n = next;
                    while n == Some(outer) {
                        i = self.skip_to(&[outer, ']'], i + 1);
                        n = self.get(i);
                        if n != Some(outer) {
                            even = false;
                            break;
                        }
                        i = self.skip_to(&[outer, ']'], i + 1);
                        n = self.get(i);
                    }
                    if even {
                        st.unmatched_delimiter = !st.unmatched_delimiter;
                        let next = self.append_literal(st, c);
                        return (true, next, false);
                    }
                    return (false, Some(c), true);
                }
                Some(Ctx::ObjectKey) => {
                    let next = self.append_literal(st, c);
                    return (true, next, false);
                }
                None => {}
            }
        }
        (false, Some(c), false)
    }

    fn scan_string_body(&mut self, st: &mut StrState) -> Option<char> {
        let outer = st.outer();
        let mut c = self.get(0);
        while let Some(ch) = c {
            if ch == outer && !st.in_low_smart_quote_span() {
                break;
            }
            if !self.step() {
                return None;
            }
            if st.missing_quotes {
                if self.cur() == Some(Ctx::ObjectKey) && (ch == ':' || is_py_space(ch)) {
                    break;
                }
                if self.cur() == Some(Ctx::Array) && (ch == ']' || ch == ',') {
                    break;
                }
            }
            if ch == '„' && st.last() != Some('\\') {
                st.rstring_delimiter.push(LOW_SMART_QUOTE_SENTINEL);
                c = self.append_literal(st, ch);
                continue;
            }
            if st.in_low_smart_quote_span() && ch == '”' {
                st.rstring_delimiter.pop();
                c = self.append_literal(st, ch);
                continue;
            }
            let opens_inline = st.pending_inline_container
                || (self.cur() == Some(Ctx::ObjectValue)
                    && ch == '{'
                    && self.get(-1) != Some('\\')
                    && self.bare_key_is_followed_by_colon(self.scroll(1)));
            if opens_inline
                && matches!(ch, '[' | '{' | '(')
                && st.last() != Some('\\')
                && let Some(end) = self.skip_inline_container(0)
            {
                st.pending_inline_container = false;
                st.inline_container_stack.clear();
                let from = self.index.max(0) as usize;
                let to = (self.index + end).clamp(0, self.len()) as usize;
                let piece: Vec<char> = self.s[from..to.max(from)].to_vec();
                st.append(&piece);
                self.index += end;
                c = self.get(0);
                continue;
            }
            if self.cur() == Some(Ctx::ObjectValue)
                && ch == ','
                && !st.pending_inline_container
                && st.inline_container_stack.is_empty()
            {
                let classification = if st.object_value_has_no_future_delimiter {
                    Comma::Str
                } else {
                    self.classify_object_value_comma(st)
                };
                match classification {
                    Comma::Member => break,
                    Comma::StrNoFutureDelimiter => {
                        st.object_value_has_no_future_delimiter = true;
                        st.pending_inline_container = false;
                    }
                    Comma::Container => st.pending_inline_container = true,
                    Comma::Str => st.pending_inline_container = false,
                }
                c = self.append_literal(st, ch);
                continue;
            }
            let keep = update_inline_container_stack(ch, st);
            if keep {
                c = self.append_literal(st, ch);
                continue;
            }
            if self.cur() == Some(Ctx::ObjectValue) && ch == '}' && st.last() != Some(outer) {
                if st.object_value_unmatched_opening_braces > 0 {
                    c = self.append_literal(st, ch);
                    continue;
                }
                let mut missing = true;
                self.skip_whitespaces();
                if self.get(1) == Some('\\') {
                    missing = false;
                }
                let i = self.cached_skip_to(st, &[outer], 1);
                if self.get(i).is_some() {
                    let i = self.scroll(i + 1);
                    let next = self.get(i);
                    if matches!(next, None | Some(',' | '}')) {
                        missing = false;
                    } else {
                        let i = self.skip_to(&[st.lstring_delimiter], i);
                        if self.get(i).is_none() {
                            missing = false;
                        } else {
                            let i = self.scroll(i + 1);
                            if self.get(i).is_some_and(|n| n != ':') {
                                missing = false;
                            }
                        }
                    }
                } else {
                    let i = self.skip_to(&[':'], 1);
                    if self.get(i).is_some() {
                        break;
                    }
                    let i = self.scroll(1);
                    let j = self.skip_to(&['}'], i);
                    if j - i > 1 {
                        missing = false;
                    }
                }
                if missing {
                    break;
                }
            }
            if ch == ']' && self.in_ctx(Ctx::Array) && st.last() != Some(outer) {
                let i = self.skip_to(&[outer], 0);
                if self.get(i).is_none() {
                    break;
                }
            }
            if self.cur() == Some(Ctx::ObjectValue) && ch == '}' {
                let i = self.scroll(1);
                let next = self.get(i);
                if next == Some('`') && self.get(i + 1) == Some('`') && self.get(i + 2) == Some('`')
                {
                    if self.brace_before_code_fence_belongs_to_string(st, i) {
                        c = self.append_literal(st, ch);
                        continue;
                    }
                    break;
                }
                if next.is_none() {
                    break;
                }
            }
            st.append(&[ch]);
            self.index += 1;
            c = self.get(0);
            let Some(mut ch) = c else { break };
            if st.last() == Some('\\') {
                let (handled, next) = self.normalize_escape_sequence(st, ch);
                c = next;
                if handled {
                    continue;
                }
                match c {
                    Some(n) => ch = n,
                    None => break,
                }
            }
            if ch == ':' && !st.missing_quotes && self.cur() == Some(Ctx::ObjectKey) {
                let i = self.skip_to(&[st.lstring_delimiter], 1);
                if self.get(i).is_some() {
                    let i = self.skip_to(&[outer], i + 1);
                    if self.get(i).is_some() {
                        let i = self.scroll(i + 1);
                        if matches!(self.get(i), Some(',' | '}')) {
                            break;
                        }
                    }
                } else {
                    break;
                }
            }
            if st.in_low_smart_quote_span() && ch == '"' {
                st.rstring_delimiter.pop();
                c = self.append_literal(st, ch);
                continue;
            }
            if ch == outer
                && self.cur() == Some(Ctx::ObjectValue)
                && self.quote_belongs_to_regex_character_class(st)
            {
                c = self.append_literal(st, ch);
                continue;
            }
            if ch == outer && st.last().is_some_and(|l| l != '\\') {
                let (handled, next, stop) = self.handle_right_delimiter_candidate(st, ch);
                c = next;
                if stop || handled {
                    if stop {
                        break;
                    }
                    continue;
                }
            }
        }
        c
    }

    fn finalize_string_result(&mut self, st: &mut StrState, c: Option<char>) -> Py {
        let outer = st.outer();
        if let Some(ch) = c
            && st.missing_quotes
            && self.cur() == Some(Ctx::ObjectKey)
            && is_py_space(ch)
        {
            self.skip_whitespaces();
            if !matches!(self.get(0), Some(':' | ',')) {
                return Py::Str(String::new());
            }
        }
        if c != Some(outer) {
            rstrip(&mut st.acc);
        } else {
            self.index += 1;
        }
        if st.missing_quotes || st.last() == Some('\n') {
            rstrip(&mut st.acc);
        }
        Py::Str(st.acc.iter().collect())
    }
}

enum EmptyRepair {
    Keep,
    Object(Vec<char>),
    Array,
}

fn update_inline_container_stack(c: char, st: &mut StrState) -> bool {
    if c == '{' || c == '[' {
        if st.pending_inline_container {
            st.inline_container_stack.push(c);
            st.pending_inline_container = false;
            return false;
        }
        if !st.inline_container_stack.is_empty() {
            st.inline_container_stack.push(c);
        }
    }
    if let Some(&top) = st.inline_container_stack.last()
        && ((c == '}' && top == '{') || (c == ']' && top == '['))
    {
        st.inline_container_stack.pop();
        return true;
    }
    false
}

fn closer(c: char) -> char {
    match c {
        '[' => ']',
        '{' => '}',
        _ => ')',
    }
}

fn matching_delimiter(c: char) -> char {
    if c == '“' { '”' } else { c }
}

fn lower(c: char) -> String {
    c.to_lowercase().collect()
}

fn rstrip(acc: &mut Vec<char>) {
    while acc.last().is_some_and(|&c| is_py_space(c)) {
        acc.pop();
    }
}

/// `s[start:end]` with Python's slice rules (negative bounds count from the end, out-of-range
/// bounds clamp).
fn py_slice(s: &[char], start: isize, end: isize) -> Vec<char> {
    let n = s.len() as isize;
    let norm = |i: isize| {
        let i = if i < 0 { i + n } else { i };
        i.clamp(0, n) as usize
    };
    let (a, b) = (norm(start), norm(end));
    if a >= b { Vec::new() } else { s[a..b].to_vec() }
}

fn strip_comments_for_classification(body: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(body.len());
    let mut in_quote: Option<char> = None;
    let mut backslashes = 0usize;
    let mut i = 0usize;
    while i < body.len() {
        let c = body[i];
        let next = body.get(i + 1).copied();
        if c == '\\' {
            backslashes += 1;
            out.push(c);
            i += 1;
            continue;
        }
        if let Some(q) = in_quote {
            out.push(c);
            if c == q && backslashes.is_multiple_of(2) {
                in_quote = None;
            }
            backslashes = 0;
            i += 1;
            continue;
        }
        if DELIMS.contains(&c) && backslashes.is_multiple_of(2) {
            in_quote = Some(c);
            out.push(c);
            backslashes = 0;
            i += 1;
            continue;
        }
        backslashes = 0;
        if c == '#' || (c == '/' && next == Some('/')) {
            i += if c == '/' { 2 } else { 1 };
            while i < body.len() && body[i] != '\n' && body[i] != '\r' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < body.len() && !(body[i] == '*' && body[i + 1] == '/') {
                i += 1;
            }
            i = (i + 2).min(body.len());
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `ObjectComparer.is_same_object`: same types and, for containers, the same shape.
fn is_same_object(a: &Py, b: &Py) -> bool {
    match (a, b) {
        (Py::Dict(x), Py::Dict(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| super::py::py_eq(k, k2))
                        .is_some_and(|(_, v2)| is_same_object(v, v2))
                })
        }
        (Py::List(x), Py::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| is_same_object(p, q))
        }
        (Py::Int(_) | Py::BigInt(_), Py::Int(_) | Py::BigInt(_)) => true,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// Python's `int(text)` on the characters a number can hold here.
fn python_int(text: &str) -> Option<Py> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<i128>() {
        Ok(i) => Some(Py::Int(i)),
        Err(_) => Some(Py::BigInt(text.trim_start_matches('+').to_string())),
    }
}

/// Python's `float(text)` on the characters a number can hold here (overflow gives `inf`).
fn python_float(text: &str) -> Option<f64> {
    if text.is_empty() || text.contains('/') {
        return None;
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if body.starts_with(['-', '+']) {
        return None;
    }
    text.parse::<f64>().ok()
}

/// Python's strict `json` decoder (`json.loads`, `JSONDecoder.raw_decode`), on characters.
pub mod strict;

/// A Python value in a tagged JSON form that tells ints, floats and dict keys apart, to compare
/// with Python's output (the unit tests here, the fuzz targets and differential tests).
#[cfg(any(test, feature = "fuzzing"))]
pub fn tag(v: &Py) -> serde_json::Value {
    use serde_json::{Value, json};
    match v {
        Py::None => Value::Null,
        Py::Bool(b) => Value::Bool(*b),
        Py::Int(i) => json!({"i": i.to_string()}),
        Py::BigInt(s) => json!({"i": s}),
        Py::Float(f) => {
            let mut s = String::new();
            super::text::write_py_float(&mut s, *f);
            json!({"f": s})
        }
        Py::Str(s) => Value::String(s.clone()),
        Py::Bytes(_) => {
            let mut repr = String::new();
            super::py::write_repr(&mut repr, v);
            json!({"other": "bytes", "repr": repr})
        }
        Py::List(items) => Value::Array(items.iter().map(tag).collect()),
        Py::Dict(entries) => {
            json!({"d": entries.iter().map(|(k, v)| json!([tag(k), tag(v)])).collect::<Vec<_>>()})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Differential check against Python: `DSPEX_JR_CORPUS=corpus.jsonl` (one JSON string per
    /// line) writes `corpus.jsonl.rust` with one tagged result per line. The Python side, run
    /// with DSPy's venv, prints the lines to compare with:
    ///
    /// ```text
    /// def tag(v):  # None/bool as is, {"i": str(int)}, {"f": repr(float)}, str, list, {"d": [[k, v]...]}
    ///     ...
    /// for line in open(corpus): print(json.dumps(tag(json_repair.loads(json.loads(line))), ensure_ascii=False))
    /// ```
    #[test]
    #[ignore = "needs a corpus file; compares with Python's json_repair offline"]
    fn dump_for_differential_check() {
        let Some(path) = std::env::var_os("DSPEX_JR_CORPUS") else {
            return;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let input: String = serde_json::from_str(line).unwrap();
            let r = match loads(&input) {
                Ok(v) => tag(&v),
                Err(_) => json!({"err": "ValueError"}),
            };
            out.push_str(&serde_json::to_string(&r).unwrap());
            out.push('\n');
        }
        let mut dest = path.clone();
        dest.push(".rust");
        std::fs::write(dest, out).unwrap();
    }
}

#[cfg(test)]
mod deep_input_tests {
    use super::*;

    /// `</a>` repeated re-enters the value parser from the comment parser once per `/`;
    /// Python's json_repair raises `ValueError` ("Input nesting exceeds the supported parser
    /// recursion depth") on this input, and so must the port, instead of overflowing the stack.
    #[test]
    fn slashes_past_the_nesting_limit_are_an_error_not_a_stack_overflow() {
        let text = format!("{}{}", "<a>".repeat(12_500), "</a>".repeat(12_500));
        assert!(loads(&text).is_err());
    }

    /// A hundred of them is within Python's recursion limit: it returns `''`.
    #[test]
    fn a_few_slashes_still_read_as_python_reads_them() {
        let text = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert_eq!(loads(&text), Ok(Py::Str(String::new())));
    }

    /// Letters are Python's (`str.isalpha`), not Rust's `is_alphabetic`: a combining mark, a
    /// Roman numeral or a circled letter is no letter; a Thai vowel sign folded out of
    /// XID_Start is one. Expected values from json_repair in DSPy's venv.
    #[test]
    fn letters_are_pythons() {
        let strs = |items: &[&str]| Py::List(items.iter().map(|s| Py::Str((*s).into())).collect());
        assert_eq!(loads("{\u{a47}A"), Ok(strs(&["A"])));
        assert_eq!(loads("[\u{2160}x"), Ok(strs(&["x"])));
        assert_eq!(loads("[\u{e33}a"), Ok(strs(&["\u{e33}a"])));
        assert!(matches!(loads("{\u{24b6}: 1}"), Ok(Py::Dict(d)) if d.is_empty()));
        assert!(is_alpha('A') && is_alpha('\u{4e00}') && !is_alpha('_') && !is_alpha('1'));
        assert!(is_alnum('1') && is_alnum('\u{2160}') && !is_alnum('\u{a47}'));
    }
}
