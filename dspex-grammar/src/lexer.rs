//! Splits a signature string into tokens with byte spans. Never fails: characters that belong to
//! no token become [`Tok::Unknown`] so the parser can report them in context.

use crate::Span;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A run of `[A-Za-z0-9_]` and non-ASCII alphanumerics: an identifier, a number, or a bad name
    /// such as `1a` (the parser decides).
    Word(String),
    /// A quoted string literal (`'…'` or `"…"`), unescaped; `None` when unterminated.
    Str(Option<String>),
    Arrow,
    Comma,
    Colon,
    PathSep,
    Lt,
    Gt,
    LBracket,
    RBracket,
    Pipe,
    Minus,
    Eq,
    Unknown(char),
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(_) => "a string literal".to_string(),
            Tok::Arrow => "`->`".to_string(),
            Tok::Comma => "`,`".to_string(),
            Tok::Colon => "`:`".to_string(),
            Tok::PathSep => "`::` or `.`".to_string(),
            Tok::Lt => "`<`".to_string(),
            Tok::Gt => "`>`".to_string(),
            Tok::LBracket => "`[`".to_string(),
            Tok::RBracket => "`]`".to_string(),
            Tok::Pipe => "`|`".to_string(),
            Tok::Minus => "`-`".to_string(),
            Tok::Eq => "`=`".to_string(),
            Tok::Unknown(c) => format!("`{}`", c.escape_debug()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Span,
}

pub(crate) fn is_word_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

pub(crate) fn lex(src: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut it = src.char_indices().peekable();
    while let Some((start, c)) = it.next() {
        let single = |tok| (tok, start + c.len_utf8());
        let (tok, end) = match c {
            c if c.is_whitespace() => continue,
            '-' if it.peek().is_some_and(|&(_, n)| n == '>') => {
                it.next();
                (Tok::Arrow, start + 2)
            }
            ':' if it.peek().is_some_and(|&(_, n)| n == ':') => {
                it.next();
                (Tok::PathSep, start + 2)
            }
            // Python's attribute access (`dspy.Image`, `typing.List`) separates a path too.
            '.' => single(Tok::PathSep),
            ',' => single(Tok::Comma),
            ':' => single(Tok::Colon),
            '<' => single(Tok::Lt),
            '>' => single(Tok::Gt),
            '[' => single(Tok::LBracket),
            ']' => single(Tok::RBracket),
            '|' => single(Tok::Pipe),
            '-' => single(Tok::Minus),
            '=' => single(Tok::Eq),
            '\'' | '"' => lex_string(c, start, &mut it),
            c if is_word_char(c) => {
                let mut word = String::from(c);
                let mut end = start + c.len_utf8();
                while let Some(&(i, n)) = it.peek() {
                    if !is_word_char(n) {
                        break;
                    }
                    word.push(n);
                    end = i + n.len_utf8();
                    it.next();
                }
                (Tok::Word(word), end)
            }
            other => single(Tok::Unknown(other)),
        };
        out.push(Token {
            tok,
            span: Span::new(start, end),
        });
    }
    out
}

/// Lexes a Python-style string literal with the common escapes (`\\`, `\'`, `\"`, `\n`, `\t`, `\r`).
fn lex_string(
    quote: char,
    start: usize,
    it: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> (Tok, usize) {
    let mut value = String::new();
    let mut end = start + 1;
    while let Some((i, c)) = it.next() {
        end = i + c.len_utf8();
        match c {
            c if c == quote => return (Tok::Str(Some(value)), end),
            '\\' => match it.next() {
                Some((j, e)) => {
                    end = j + e.len_utf8();
                    value.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    (Tok::Str(None), end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_both_spellings() {
        assert_eq!(
            toks("a: Vec<String>->b: list[str]"),
            vec![
                Tok::Word("a".into()),
                Tok::Colon,
                Tok::Word("Vec".into()),
                Tok::Lt,
                Tok::Word("String".into()),
                Tok::Gt,
                Tok::Arrow,
                Tok::Word("b".into()),
                Tok::Colon,
                Tok::Word("list".into()),
                Tok::LBracket,
                Tok::Word("str".into()),
                Tok::RBracket,
            ]
        );
    }

    #[test]
    fn strings_and_spans() {
        let t = lex("Literal['it\\'s', \"x\"]");
        assert_eq!(t[2].tok, Tok::Str(Some("it's".into())));
        assert_eq!(t[4].tok, Tok::Str(Some("x".into())));
        assert_eq!(lex("'open")[0].tok, Tok::Str(None));
        let t = lex("é -> b");
        assert_eq!(t[0].span, Span::new(0, 2));
        assert_eq!(t[1].span, Span::new(3, 5));
    }
}
