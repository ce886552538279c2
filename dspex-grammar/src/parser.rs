//! Recursive-descent parser over the token list. Errors are collected, not thrown: each field is
//! parsed on its own, so one bad field does not hide the others.

use crate::lexer::{Tok, Token, lex};
use crate::types::{LiteralValue, MapKind, TypeExpr, TypeKind};
use crate::{ErrorKind, ParseError, ParsedField, ParsedSignature, Side, Span, check_field_name};

/// How deeply types may nest (`Vec<Vec<…>>`); deeper input is an error, not a stack overflow.
const MAX_DEPTH: usize = 32;

/// Parses a whole signature string (`inputs -> outputs`). Returns every error found, in source
/// order; the list is never empty on `Err`.
pub fn parse_signature(src: &str) -> Result<ParsedSignature, Vec<ParseError>> {
    let (sig, errors) = parse_signature_partial(src);
    if errors.is_empty() {
        Ok(sig)
    } else {
        Err(errors)
    }
}

/// Parses as much of a signature string as is valid: the fields that parsed cleanly (without
/// duplicates) and every error. The proc-macros use the partial result to keep generating the
/// structs users refer to, so one mistake does not cascade into many.
pub fn parse_signature_partial(src: &str) -> (ParsedSignature, Vec<ParseError>) {
    let tokens = lex(src);
    let p = Parser {
        src,
        errors: Vec::new(),
    };
    p.signature(&tokens)
}

/// Parses a single type (`Vec<String>`, `list[str]`, `Optional[int]`, …).
pub fn parse_type(src: &str) -> Result<TypeExpr, Vec<ParseError>> {
    let tokens = lex(src);
    let mut p = Parser {
        src,
        errors: Vec::new(),
    };
    let end = Span::new(src.len(), src.len());
    if tokens.is_empty() {
        p.error(ErrorKind::UnexpectedEnd, end, "expected a type");
        return Err(p.errors);
    }
    let mut cur = Cursor {
        toks: &tokens,
        pos: 0,
        end,
    };
    match p.ty(&mut cur, 0) {
        Ok(ty) => {
            if let Some(t) = cur.peek() {
                let t = t.clone();
                p.error(
                    ErrorKind::UnexpectedToken,
                    t.span,
                    format!("unexpected {} after the type", t.tok.describe()),
                );
                return Err(p.errors);
            }
            Ok(ty)
        }
        Err(()) => Err(p.errors),
    }
}

struct Parser<'s> {
    src: &'s str,
    errors: Vec<ParseError>,
}

struct Cursor<'t> {
    toks: &'t [Token],
    pos: usize,
    /// The span reported when input runs out.
    end: Span,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<&'t Token> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek().is_some_and(|t| &t.tok == tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    /// The span of the last consumed token, or the end.
    fn last_span(&self) -> Span {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .map_or(self.end, |t| t.span)
    }
}

/// `["python"]` after `Code`, `dspy.Code` or `dspex::Code`: the language, with the tokens
/// consumed. Anything else is left for the ordinary type arguments.
fn code_subscript(cur: &mut Cursor<'_>, path: &[String]) -> Option<String> {
    let is_code = match path {
        [name] => name == "Code",
        [module, name] => matches!(module.as_str(), "dspy" | "dspex") && name == "Code",
        _ => false,
    };
    if !is_code {
        return None;
    }
    match (
        cur.toks.get(cur.pos).map(|t| &t.tok),
        cur.toks.get(cur.pos + 1).map(|t| &t.tok),
        cur.toks.get(cur.pos + 2).map(|t| &t.tok),
    ) {
        (Some(Tok::LBracket), Some(Tok::Str(Some(language))), Some(Tok::RBracket))
            if !language.is_empty() =>
        {
            let language = language.clone();
            cur.pos += 3;
            Some(language)
        }
        _ => None,
    }
}

/// A parsed type position: a real type or a bare `None` (only meaningful inside a union).
enum Parsed {
    Type(TypeExpr),
    None(Span),
}

type PResult<T> = Result<T, ()>;

impl Parser<'_> {
    fn error(&mut self, kind: ErrorKind, span: Span, message: impl Into<String>) {
        self.errors
            .push(ParseError::new(self.src, kind, span, message));
    }

    fn signature(mut self, tokens: &[Token]) -> (ParsedSignature, Vec<ParseError>) {
        let empty = ParsedSignature {
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        let arrows: Vec<usize> = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| t.tok == Tok::Arrow)
            .map(|(i, _)| i)
            .collect();
        let arrow = match arrows.as_slice() {
            [] => {
                self.error(
                    ErrorKind::MissingArrow,
                    Span::new(0, self.src.len()),
                    "a signature needs `->` between its inputs and outputs",
                );
                return (empty, self.errors);
            }
            [one] => *one,
            [_, rest @ ..] => {
                for &extra in rest {
                    self.error(
                        ErrorKind::MultipleArrows,
                        tokens[extra].span,
                        "a signature has exactly one `->`; found another one here",
                    );
                }
                return (empty, self.errors);
            }
        };
        let arrow_span = tokens[arrow].span;
        let inputs = self.side(&tokens[..arrow], Side::Input, arrow_span);
        let outputs = self.side(
            &tokens[arrow + 1..],
            Side::Output,
            Span::new(self.src.len(), self.src.len()),
        );
        let (inputs, outputs) = self.check_names(inputs, outputs);
        self.errors.sort_by_key(|e| (e.span.start, e.span.end));
        (ParsedSignature { inputs, outputs }, self.errors)
    }

    /// Parses one side of `->`. `end` is where running out of tokens is reported.
    fn side(&mut self, tokens: &[Token], side: Side, end: Span) -> Vec<ParsedField> {
        if tokens.is_empty() {
            let (kind, message) = match side {
                Side::Input => (ErrorKind::EmptyInputs, "no input fields before `->`"),
                Side::Output => (ErrorKind::EmptyOutputs, "no output fields after `->`"),
            };
            // Point at the arrow for a missing input side, at the end for a missing output side.
            let span = match side {
                Side::Input => end,
                Side::Output => Span::new(self.src.len().saturating_sub(2), self.src.len()),
            };
            self.error(kind, span, message);
            return Vec::new();
        }
        let mut fields = Vec::new();
        let segments = split_top_level_commas(tokens);
        let last = segments.len() - 1;
        for (i, seg) in segments.into_iter().enumerate() {
            if seg.tokens.is_empty() {
                // A trailing comma is fine (as in Python); an empty entry in the middle is not.
                if i != last || i == 0 {
                    self.error(
                        ErrorKind::UnexpectedToken,
                        seg.comma.unwrap_or(end),
                        "expected a field name before this `,`",
                    );
                }
                continue;
            }
            let seg_end = seg.comma.unwrap_or(end);
            if let Ok(field) = self.field(seg.tokens, side, seg_end) {
                fields.push(field);
            }
        }
        fields
    }

    fn field(&mut self, tokens: &[Token], side: Side, end: Span) -> PResult<ParsedField> {
        let mut cur = Cursor {
            toks: tokens,
            pos: 0,
            end,
        };
        let first = cur.next().ok_or(())?;
        let name = match &first.tok {
            Tok::Word(w) => w.clone(),
            other => {
                self.error(
                    ErrorKind::InvalidIdentifier,
                    first.span,
                    format!("expected a field name, found {}", other.describe()),
                );
                return Err(());
            }
        };
        if let Err((kind, message)) = check_field_name(&name) {
            self.error(kind, first.span, message);
            return Err(());
        }
        // From here on the name is valid: the field is kept (untyped if its type is bad) so
        // partial results still carry it, while the error is recorded.
        let ty = match cur.next() {
            None => None,
            Some(Token {
                tok: Tok::Colon,
                span,
            }) => {
                if cur.peek().is_none() {
                    self.error(
                        ErrorKind::UnexpectedEnd,
                        *span,
                        format!("expected a type after `{name}:`"),
                    );
                    None
                } else {
                    self.field_type(&mut cur, &name)
                }
            }
            Some(t) => {
                let message = match &t.tok {
                    Tok::Word(w) => format!(
                        "expected `,`, `:` or `->` after field name `{name}`, found `{w}` (field names cannot contain spaces)"
                    ),
                    Tok::Eq => {
                        format!("default values are not supported in signatures (field `{name}`)")
                    }
                    other => format!(
                        "expected `,`, `:` or `->` after field name `{name}`, found {}",
                        other.describe()
                    ),
                };
                let kind = match &t.tok {
                    Tok::Word(_) | Tok::Unknown(_) | Tok::Minus => ErrorKind::InvalidIdentifier,
                    _ => ErrorKind::UnexpectedToken,
                };
                self.error(kind, t.span, message);
                None
            }
        };
        Ok(ParsedField {
            name,
            name_span: first.span,
            ty,
            side,
        })
    }

    /// The type after `name:`; `None` (with the error recorded) when it is malformed.
    fn field_type(&mut self, cur: &mut Cursor<'_>, name: &str) -> Option<TypeExpr> {
        let ty = self.ty(cur, 0).ok()?;
        if let Some(t) = cur.peek() {
            let message = if t.tok == Tok::Eq {
                format!("default values are not supported in signatures (field `{name}`)")
            } else {
                format!(
                    "unexpected {} after the type of `{name}`; expected `,` or `->`",
                    t.tok.describe()
                )
            };
            self.error(ErrorKind::UnexpectedToken, t.span, message);
        }
        Some(ty)
    }

    /// Reports repeated names and drops the repeats (the first occurrence stays).
    fn check_names(
        &mut self,
        inputs: Vec<ParsedField>,
        outputs: Vec<ParsedField>,
    ) -> (Vec<ParsedField>, Vec<ParsedField>) {
        let mut kept: Vec<ParsedField> = Vec::with_capacity(inputs.len() + outputs.len());
        for f in inputs.into_iter().chain(outputs) {
            match kept.iter().find(|g| g.name == f.name) {
                Some(g) if g.side == f.side => self.error(
                    ErrorKind::DuplicateField,
                    f.name_span,
                    format!("field `{}` is declared twice on the {} side", f.name, f.side),
                ),
                Some(_) => self.error(
                    ErrorKind::NameOnBothSides,
                    f.name_span,
                    format!(
                        "`{}` is both an input and an output; inputs and outputs need distinct names",
                        f.name
                    ),
                ),
                None => kept.push(f),
            }
        }
        kept.into_iter().partition(|f| f.side == Side::Input)
    }

    /// A type, possibly a `|` union.
    fn ty(&mut self, cur: &mut Cursor<'_>, depth: usize) -> PResult<TypeExpr> {
        let start = cur.peek().map_or(cur.end, |t| t.span);
        let mut members = vec![self.primary(cur, depth)?];
        while cur.eat(&Tok::Pipe) {
            if cur.peek().is_none() {
                self.error(
                    ErrorKind::UnexpectedEnd,
                    cur.last_span(),
                    "expected a type after `|`",
                );
                return Err(());
            }
            members.push(self.primary(cur, depth)?);
        }
        let span = start.join(cur.last_span());
        self.union(members, span)
    }

    /// Resolves union members: `T | None` (either order) is `Optional[T]`; other unions are not
    /// supported.
    fn union(&mut self, members: Vec<Parsed>, span: Span) -> PResult<TypeExpr> {
        let has_none = members.iter().any(|m| matches!(m, Parsed::None(_)));
        let mut types: Vec<TypeExpr> = members
            .into_iter()
            .filter_map(|m| match m {
                Parsed::Type(t) => Some(t),
                Parsed::None(_) => None,
            })
            .collect();
        match (types.len(), has_none) {
            (1, false) => Ok(types.remove(0)),
            (1, true) => Ok(TypeExpr {
                kind: TypeKind::Optional(Box::new(types.remove(0))),
                span,
            }),
            (0, _) => {
                self.error(
                    ErrorKind::UnsupportedType,
                    span,
                    "a field cannot always be `None`",
                );
                Err(())
            }
            _ => {
                self.error(
                    ErrorKind::UnsupportedType,
                    span,
                    "unions other than `T | None` are not supported; use an enum or `Any`",
                );
                Err(())
            }
        }
    }

    fn primary(&mut self, cur: &mut Cursor<'_>, depth: usize) -> PResult<Parsed> {
        if depth > MAX_DEPTH {
            self.error(
                ErrorKind::UnsupportedType,
                cur.peek().map_or(cur.end, |t| t.span),
                format!("types nest more than {MAX_DEPTH} levels deep"),
            );
            return Err(());
        }
        let Some(tok) = cur.next() else {
            self.error(ErrorKind::UnexpectedEnd, cur.end, "expected a type");
            return Err(());
        };
        let start = tok.span;
        let first = match &tok.tok {
            Tok::Word(w) => w.clone(),
            Tok::Unknown('&') => {
                self.error(
                    ErrorKind::UnsupportedType,
                    start,
                    "references are not supported in signatures; use an owned type such as `String`",
                );
                return Err(());
            }
            Tok::Unknown('(') => {
                self.error(
                    ErrorKind::UnsupportedType,
                    start,
                    "tuple types are not supported in signatures; use a struct deriving `JsonSchema`",
                );
                return Err(());
            }
            Tok::LBracket => {
                self.error(
                    ErrorKind::UnsupportedType,
                    start,
                    "array and slice types are not supported in signatures; use `Vec<T>`",
                );
                return Err(());
            }
            Tok::Str(_) => {
                self.error(
                    ErrorKind::UnsupportedType,
                    start,
                    "a string is not a type; write `Literal['…']` for fixed choices",
                );
                return Err(());
            }
            other => {
                self.error(
                    ErrorKind::UnexpectedToken,
                    start,
                    format!("expected a type, found {}", other.describe()),
                );
                return Err(());
            }
        };
        if first == "None" || first == "NoneType" {
            return Ok(Parsed::None(start));
        }
        if first == "Literal" {
            return self.literal(cur, start).map(Parsed::Type);
        }
        let mut path = vec![first];
        while cur.peek().is_some_and(|t| t.tok == Tok::PathSep) {
            cur.next();
            match cur.next() {
                Some(Token {
                    tok: Tok::Word(w), ..
                }) => path.push(w.clone()),
                Some(t) => {
                    let t = t.clone();
                    self.error(
                        ErrorKind::UnexpectedToken,
                        t.span,
                        format!("expected a name after `::`, found {}", t.tok.describe()),
                    );
                    return Err(());
                }
                None => {
                    self.error(
                        ErrorKind::UnexpectedEnd,
                        cur.last_span(),
                        "expected a name after `::`",
                    );
                    return Err(());
                }
            }
        }
        if let Some(language) = code_subscript(cur, &path) {
            // DSPy's `Code["python"]` (`dspy.Code["python"]`) is the class `Code_python`.
            let last = path.len() - 1;
            path[last] = format!("Code_{language}");
            let span = start.join(cur.last_span());
            return Ok(Parsed::Type(TypeExpr {
                kind: TypeKind::Named(path),
                span,
            }));
        }
        let args = self.args(cur, depth, &path)?;
        let span = start.join(cur.last_span());
        self.resolve(path, args, span)
    }

    /// Type arguments in `<…>` or `[…]`, if present.
    fn args(
        &mut self,
        cur: &mut Cursor<'_>,
        depth: usize,
        path: &[String],
    ) -> PResult<Option<Vec<Parsed>>> {
        let close = match cur.peek().map(|t| &t.tok) {
            Some(Tok::Lt) => Tok::Gt,
            Some(Tok::LBracket) => Tok::RBracket,
            _ => return Ok(None),
        };
        let open = cur.next().map_or(cur.end, |t| t.span);
        let name = path.join("::");
        let mut args = Vec::new();
        loop {
            if cur.peek().is_none() {
                return self.unclosed(open, &name, &close);
            }
            if cur.peek().is_some_and(|t| t.tok == close) && !args.is_empty() {
                cur.next();
                return Ok(Some(args));
            }
            let start = cur.peek().map_or(cur.end, |t| t.span);
            let mut members = vec![self.primary(cur, depth + 1)?];
            while cur.eat(&Tok::Pipe) {
                members.push(self.primary(cur, depth + 1)?);
            }
            let span = start.join(cur.last_span());
            if members.len() == 1 {
                args.push(members.remove(0));
            } else {
                args.push(Parsed::Type(self.union(members, span)?));
            }
            match cur.next() {
                Some(t) if t.tok == Tok::Comma => continue,
                Some(t) if t.tok == close => return Ok(Some(args)),
                Some(t) => {
                    let t = t.clone();
                    self.error(
                        ErrorKind::UnexpectedToken,
                        t.span,
                        format!(
                            "expected `,` or {} in the type arguments of `{name}`, found {}",
                            close.describe(),
                            t.tok.describe()
                        ),
                    );
                    return Err(());
                }
                None => return self.unclosed(open, &name, &close),
            }
        }
    }

    fn unclosed<T>(&mut self, open: Span, name: &str, close: &Tok) -> PResult<T> {
        self.error(
            ErrorKind::UnexpectedEnd,
            open,
            format!(
                "this bracket of `{name}` is never closed; expected {}",
                close.describe()
            ),
        );
        Err(())
    }

    fn literal(&mut self, cur: &mut Cursor<'_>, start: Span) -> PResult<TypeExpr> {
        if !cur.eat(&Tok::LBracket) {
            self.error(
                ErrorKind::InvalidLiteral,
                start,
                "`Literal` needs its values in brackets: `Literal['a', 'b']`",
            );
            return Err(());
        }
        let mut values = Vec::new();
        loop {
            let Some(tok) = cur.next() else {
                self.error(
                    ErrorKind::UnexpectedEnd,
                    start,
                    "`Literal[` is never closed; expected `]`",
                );
                return Err(());
            };
            let value = match &tok.tok {
                Tok::RBracket if values.is_empty() => {
                    self.error(
                        ErrorKind::InvalidLiteral,
                        start.join(tok.span),
                        "`Literal[]` needs at least one value",
                    );
                    return Err(());
                }
                Tok::Str(Some(s)) => LiteralValue::Str(s.clone()),
                Tok::Str(None) => {
                    self.error(
                        ErrorKind::InvalidLiteral,
                        tok.span,
                        "unterminated string in `Literal[...]`",
                    );
                    return Err(());
                }
                Tok::Word(w) if w == "True" => LiteralValue::Bool(true),
                Tok::Word(w) if w == "False" => LiteralValue::Bool(false),
                Tok::Word(w) if w == "None" => LiteralValue::None,
                Tok::Word(w) if w.chars().all(|c| c.is_ascii_digit()) => {
                    self.int_literal(w, false, tok.span)?
                }
                Tok::Minus => match cur.next() {
                    Some(Token {
                        tok: Tok::Word(w),
                        span,
                    }) if w.chars().all(|c| c.is_ascii_digit()) => {
                        self.int_literal(w, true, tok.span.join(*span))?
                    }
                    _ => {
                        self.error(
                            ErrorKind::InvalidLiteral,
                            tok.span,
                            "expected a number after `-`",
                        );
                        return Err(());
                    }
                },
                other => {
                    self.error(
                        ErrorKind::InvalidLiteral,
                        tok.span,
                        format!(
                            "`Literal` values are quoted strings, integers, `True`, `False` or `None`; found {}",
                            other.describe()
                        ),
                    );
                    return Err(());
                }
            };
            values.push(value);
            match cur.next() {
                Some(t) if t.tok == Tok::Comma => {
                    if cur.eat(&Tok::RBracket) {
                        break;
                    }
                }
                Some(t) if t.tok == Tok::RBracket => break,
                Some(t) => {
                    let t = t.clone();
                    self.error(
                        ErrorKind::InvalidLiteral,
                        t.span,
                        format!(
                            "expected `,` or `]` in `Literal[...]`, found {}",
                            t.tok.describe()
                        ),
                    );
                    return Err(());
                }
                None => {
                    self.error(
                        ErrorKind::UnexpectedEnd,
                        start,
                        "`Literal[` is never closed; expected `]`",
                    );
                    return Err(());
                }
            }
        }
        Ok(TypeExpr {
            kind: TypeKind::Literal(values),
            span: start.join(cur.last_span()),
        })
    }

    fn int_literal(&mut self, digits: &str, negative: bool, span: Span) -> PResult<LiteralValue> {
        let text = if negative {
            format!("-{digits}")
        } else {
            digits.to_string()
        };
        match text.parse::<i64>() {
            Ok(v) => Ok(LiteralValue::Int(v)),
            Err(_) => {
                self.error(
                    ErrorKind::InvalidLiteral,
                    span,
                    format!("`{text}` does not fit in a 64-bit integer"),
                );
                Err(())
            }
        }
    }

    fn resolve(
        &mut self,
        path: Vec<String>,
        args: Option<Vec<Parsed>>,
        span: Span,
    ) -> PResult<Parsed> {
        let std_prefix = matches!(
            path.first().map(String::as_str),
            Some("std" | "alloc" | "core" | "serde_json" | "typing")
        );
        let name: &str = if path.len() == 1 || std_prefix {
            path.last().map_or("", String::as_str)
        } else {
            ""
        };
        let display = path.join("::");
        let mk = |kind| Ok(Parsed::Type(TypeExpr { kind, span }));

        if let Some(kind) = TypeKind::scalar(name) {
            if args.is_some() {
                self.error(
                    ErrorKind::UnsupportedType,
                    span,
                    format!("`{display}` takes no type arguments"),
                );
                return Err(());
            }
            return mk(kind);
        }
        match name {
            "Vec" | "list" | "List" => {
                let kind = match self.exact_args(args, 1, &display, name == "Vec", span)? {
                    Some(mut a) => TypeKind::List(Box::new(a.remove(0))),
                    None => TypeKind::List(Box::new(TypeExpr {
                        kind: TypeKind::Any,
                        span,
                    })),
                };
                mk(kind)
            }
            "Option" | "Optional" => match self.exact_args(args, 1, &display, true, span)? {
                Some(mut a) => mk(TypeKind::Optional(Box::new(a.remove(0)))),
                None => Err(()),
            },
            "HashMap" | "BTreeMap" | "dict" | "Dict" => {
                let map_kind = match name {
                    "HashMap" => MapKind::HashMap,
                    "BTreeMap" => MapKind::BTreeMap,
                    _ => MapKind::Dict,
                };
                let required = matches!(map_kind, MapKind::HashMap | MapKind::BTreeMap);
                match self.exact_args(args, 2, &display, required, span)? {
                    Some(mut a) => {
                        let value = a.remove(1);
                        let key = a.remove(0);
                        if key.kind != TypeKind::Str {
                            self.error(
                                ErrorKind::UnsupportedType,
                                key.span,
                                format!(
                                    "map keys must be strings (`String` or `str`), not `{}`",
                                    key.rust_name()
                                ),
                            );
                            return Err(());
                        }
                        mk(TypeKind::Map(map_kind, Box::new(value)))
                    }
                    None => mk(TypeKind::Map(
                        map_kind,
                        Box::new(TypeExpr {
                            kind: TypeKind::Any,
                            span,
                        }),
                    )),
                }
            }
            "Union" => {
                let Some(members) = args else {
                    self.error(
                        ErrorKind::UnsupportedType,
                        span,
                        "`Union` needs type arguments: `Union[T, None]`",
                    );
                    return Err(());
                };
                self.union(members, span).map(Parsed::Type)
            }
            "tuple" | "Tuple" | "set" | "Set" | "frozenset" | "HashSet" | "BTreeSet" | "bytes"
            | "bytearray" | "complex" | "char" | "Box" | "Rc" | "Arc" | "Cow" | "str_" => {
                self.error(
                    ErrorKind::UnsupportedType,
                    span,
                    format!("`{display}` is not supported in signatures; {SUPPORTED}"),
                );
                Err(())
            }
            _ => {
                if args.is_some() {
                    self.error(
                        ErrorKind::UnsupportedType,
                        span,
                        format!("generic type `{display}<…>` is not supported in signatures; {SUPPORTED}"),
                    );
                    return Err(());
                }
                if path.len() == 1 && path[0].starts_with(|c: char| c.is_ascii_lowercase()) {
                    let hint = match path[0].as_str() {
                        "string" => " (did you mean `str` or `String`?)",
                        "integer" | "long" => " (did you mean `int` or `i64`?)",
                        "double" | "number" => " (did you mean `float` or `f64`?)",
                        "boolean" => " (did you mean `bool`?)",
                        "any" | "object" => " (did you mean `Any`?)",
                        _ => "",
                    };
                    self.error(
                        ErrorKind::UnsupportedType,
                        span,
                        format!("unknown type `{display}`{hint}; {SUPPORTED}"),
                    );
                    return Err(());
                }
                mk(TypeKind::Named(path))
            }
        }
    }

    /// Checks the argument count of a generic; `None` when no arguments were written and
    /// `required` is false (bare `list` / `dict`).
    fn exact_args(
        &mut self,
        args: Option<Vec<Parsed>>,
        count: usize,
        name: &str,
        required: bool,
        span: Span,
    ) -> PResult<Option<Vec<TypeExpr>>> {
        let Some(args) = args else {
            if required {
                self.error(
                    ErrorKind::UnsupportedType,
                    span,
                    format!(
                        "`{name}` needs {count} type argument{}",
                        if count == 1 { "" } else { "s" }
                    ),
                );
                return Err(());
            }
            return Ok(None);
        };
        if args.len() != count {
            self.error(
                ErrorKind::UnsupportedType,
                span,
                format!(
                    "`{name}` takes {count} type argument{}, found {}",
                    if count == 1 { "" } else { "s" },
                    args.len()
                ),
            );
            return Err(());
        }
        let mut out = Vec::with_capacity(count);
        for a in args {
            match a {
                Parsed::Type(t) => out.push(t),
                Parsed::None(s) => {
                    self.error(
                        ErrorKind::UnsupportedType,
                        s,
                        "`None` is only allowed in `Optional`/`Union`/`| None`",
                    );
                    return Err(());
                }
            }
        }
        Ok(Some(out))
    }
}

const SUPPORTED: &str = "supported: str/String, bool, int/i8..u128, float/f32/f64, Any, list[T]/Vec<T>, \
Optional[T]/Option<T>, dict[str, V]/HashMap<String, V>/BTreeMap<String, V>, Literal[...], \
and user types (a struct deriving JsonSchema or an enum deriving LiteralEnum)";

struct Segment<'t> {
    tokens: &'t [Token],
    /// The comma ending this segment, if any.
    comma: Option<Span>,
}

/// Splits a side at commas that are not inside `<…>` or `[…]`.
fn split_top_level_commas(tokens: &[Token]) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.tok {
            Tok::Lt | Tok::LBracket | Tok::Unknown('(') => depth += 1,
            Tok::Gt | Tok::RBracket | Tok::Unknown(')') => depth = depth.saturating_sub(1),
            Tok::Comma if depth == 0 => {
                out.push(Segment {
                    tokens: &tokens[start..i],
                    comma: Some(t.span),
                });
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(Segment {
        tokens: &tokens[start..],
        comma: None,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FloatKind, IntKind};

    fn kinds(src: &str) -> Vec<ErrorKind> {
        parse_signature(src)
            .unwrap_err()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    fn ty(src: &str) -> String {
        parse_type(src).unwrap().dspy_name()
    }

    #[test]
    fn untyped_and_typed_fields() {
        let s = parse_signature("question -> answer").unwrap();
        assert_eq!(s.inputs[0].name, "question");
        assert_eq!(s.inputs[0].side, Side::Input);
        assert_eq!(s.outputs[0].name, "answer");
        assert!(s.outputs[0].ty.is_none());
        assert_eq!(s.outputs[0].name_span, Span::new(12, 18));

        let s = parse_signature(
            "question: String, context: Vec<String> -> answer: String, confidence: f64",
        )
        .unwrap();
        let t = |f: &ParsedField| f.ty.as_ref().unwrap().kind.clone();
        assert_eq!(t(&s.inputs[0]), TypeKind::Str);
        assert_eq!(t(&s.outputs[1]), TypeKind::Float(FloatKind::F64));
        assert_eq!(s.inputs[1].ty.as_ref().unwrap().dspy_name(), "list[str]");
        assert_eq!(s.inputs[1].ty.as_ref().unwrap().rust_name(), "Vec<String>");
    }

    #[test]
    fn both_spellings_agree() {
        assert_eq!(ty("Vec<String>"), ty("list[str]"));
        assert_eq!(ty("Option<String>"), "Union[str, NoneType]");
        assert_eq!(ty("Optional[str]"), "Union[str, NoneType]");
        assert_eq!(ty("str | None"), "Union[str, NoneType]");
        assert_eq!(ty("None | int"), "Union[int, NoneType]");
        assert_eq!(ty("Union[str, None]"), "Union[str, NoneType]");
        assert_eq!(ty("HashMap<String, i64>"), "dict[str, int]");
        assert_eq!(ty("dict[str, int]"), "dict[str, int]");
        assert_eq!(ty("BTreeMap<String, Vec<f32>>"), "dict[str, list[float]]");
        assert_eq!(
            ty("std::collections::HashMap<String, bool>"),
            "dict[str, bool]"
        );
        assert_eq!(
            ty("Literal['a', \"b's\", 3, -2, True, None]"),
            "Literal['a', \"b's\", 3, -2, True, None]"
        );
        assert_eq!(ty("list"), "list[Any]");
        assert_eq!(ty("Citation"), "Citation");
        assert_eq!(ty("crate::types::Citation"), "Citation");
        assert_eq!(
            parse_type("crate::types::Citation").unwrap().rust_name(),
            "crate::types::Citation"
        );
        assert_eq!(parse_type("u32").unwrap().kind, TypeKind::Int(IntKind::U32));
        // DSPy's `Code["python"]` is its class `Code_python`.
        assert_eq!(
            parse_type("Code['python']").unwrap().dspy_name(),
            "Code_python"
        );
        let list = parse_type("list[dspy.Code[\"rust\"]]").unwrap();
        assert!(
            matches!(&list.kind, TypeKind::List(t) if t.kind == TypeKind::Named(vec!["dspy".into(), "Code_rust".into()]))
        );
        assert_eq!(list.dspy_name(), "list[Code_rust]");
        assert_eq!(list.rust_name(), "Vec<Code<Rust>>");
        assert_eq!(crate::code_language_marker("c++"), None);
        // Only a string subscript: `Code[int]` stays a (refused) generic.
        assert!(parse_type("Code[int]").is_err());
        assert!(parse_type("Code['']").is_err());
        // Python's attribute access is a path: DSPy's `dspy.Image`.
        let image = parse_type("list[dspy.Image]").unwrap();
        assert_eq!(image.dspy_name(), "list[Image]");
        assert_eq!(image.rust_name(), "Vec<Image>");
        assert_eq!(
            parse_type("typing.Optional[str]").unwrap().dspy_name(),
            "Union[str, NoneType]"
        );
        assert_eq!(parse_type("int").unwrap().rust_name(), "i64");
        assert_eq!(
            parse_type("dict[str, int]").unwrap().rust_name(),
            "BTreeMap<String, i64>"
        );
        assert_eq!(parse_type("Literal['x']").unwrap().rust_name(), "String");
    }

    #[test]
    fn whitespace_and_trailing_commas() {
        let s = parse_signature("  a ,b, ->c  ").unwrap();
        assert_eq!(s.inputs.len(), 2);
        let s = parse_signature("a->b").unwrap();
        assert_eq!(s.outputs[0].name, "b");
    }

    #[test]
    fn structural_errors() {
        assert_eq!(kinds("question answer"), [ErrorKind::MissingArrow]);
        assert_eq!(kinds(""), [ErrorKind::MissingArrow]);
        assert_eq!(kinds("a -> b -> c"), [ErrorKind::MultipleArrows]);
        assert_eq!(kinds("-> b"), [ErrorKind::EmptyInputs]);
        assert_eq!(kinds("a ->"), [ErrorKind::EmptyOutputs]);
        assert_eq!(kinds("a, a -> b"), [ErrorKind::DuplicateField]);
        assert_eq!(kinds("a -> a"), [ErrorKind::NameOnBothSides]);
        assert_eq!(kinds("1a -> b"), [ErrorKind::InvalidIdentifier]);
        assert_eq!(kinds("a b -> c"), [ErrorKind::InvalidIdentifier]);
        assert_eq!(kinds("type -> b"), [ErrorKind::Keyword]);
        assert_eq!(kinds("a,,b -> c"), [ErrorKind::UnexpectedToken]);
        assert_eq!(kinds("a: -> b"), [ErrorKind::UnexpectedEnd]);
        assert_eq!(kinds("a: int = 3 -> b"), [ErrorKind::UnexpectedToken]);
    }

    #[test]
    fn all_errors_reported_together() {
        let errs = parse_signature("1a, type -> b: Vec<>, c: &str").unwrap_err();
        let got: Vec<_> = errs.iter().map(|e| (e.kind, e.column)).collect();
        assert_eq!(
            got,
            [
                (ErrorKind::InvalidIdentifier, 1),
                (ErrorKind::Keyword, 5),
                (ErrorKind::UnexpectedToken, 20),
                (ErrorKind::UnsupportedType, 26),
            ]
        );
    }

    #[test]
    fn type_errors() {
        let msg = |s: &str| parse_type(s).unwrap_err()[0].message.clone();
        assert!(msg("&str").contains("references"));
        assert!(msg("Vec").contains("needs 1 type argument"));
        assert!(msg("Vec<String, i32>").contains("takes 1 type argument"));
        assert!(msg("HashMap<i32, String>").contains("keys must be strings"));
        assert!(msg("Foo<Bar>").contains("generic type `Foo<…>`"));
        assert!(msg("string").contains("did you mean `str`"));
        assert!(msg("Union[int, str]").contains("unions other than"));
        assert!(msg("None").contains("always be `None`"));
        assert!(msg("Literal[]").contains("at least one value"));
        assert!(msg("Literal['a'").contains("never closed"));
        assert!(msg("Literal[99999999999999999999]").contains("64-bit"));
        assert!(msg("Vec<Vec<String>").contains("never closed"));
        assert!(msg("tuple[int, str]").contains("not supported"));
        assert!(msg("String<u8>").contains("takes no type arguments"));
        let deep = format!("{}String{}", "Vec<".repeat(100), ">".repeat(100));
        assert!(msg(&deep).contains("nest more than"));
    }

    #[test]
    fn columns_count_characters() {
        let e = &parse_signature("é, é -> b").unwrap_err()[0];
        assert_eq!(e.kind, ErrorKind::InvalidIdentifier);
        assert_eq!(e.column, 1);
        let e = &parse_signature("a -> b, a2: Vec<>").unwrap_err()[0];
        assert_eq!(e.column, 17);
    }
}
