//! Python's `xml.etree.ElementTree`, as far as DSPy's `XMLAdapter` uses it: `ET.fromstring`
//! (a strict XML 1.0 parse, through [`roxmltree`] where ElementTree uses expat), an element's
//! `tag`, `text`, `tail`, attributes and child elements, and
//! `ET.tostring(element, encoding="unicode")`.
//!
//! What is reproduced:
//! - tags as ElementTree spells them: `name`, or `{uri}name` for a namespaced element (an
//!   unbound prefix is a parse error, `xmlns` declarations are not attributes);
//! - `text` and `tail`: the character data before an element's first child and after an
//!   element, with entity and character references resolved, CDATA sections included, line
//!   ends normalized to `\n`, and comments and processing instructions dropped (the text on
//!   both sides of one is joined, as ElementTree's default tree builder does);
//! - what is not well-formed is an error: mismatched or unclosed tags, undefined entities (only
//!   the five predefined ones and character references exist: a document type declaration
//!   cannot appear inside an element), references to characters XML forbids, characters XML
//!   forbids (`\x01`, `\u{fffe}`), `]]>` in text, `--` in a comment, duplicate attributes, an
//!   XML declaration that is not at the start, text after the root element;
//! - `tostring`: the element with its attributes and children, then its tail; text escaped as
//!   `_escape_cdata` does (`&`, `<`, `>`), attributes as `_escape_attrib` does (also `"`, `\r`,
//!   `\n`, `\t`), empty elements as `<tag />`, namespaces declared on the element with the
//!   well-known prefixes or `ns0`, `ns1`, … in document order.
//!
//! Where it differs: the wording and position of a parse error are roxmltree's, told in
//! ElementTree's form (`mismatched tag: …: line 1, column 16`, line from 1, column from 0),
//! but the two parsers do not always stop at the same character; the set of characters allowed
//! in names is XML 1.0's fifth edition (expat's is slightly older).

use roxmltree::{Document, Node, ParsingOptions};
use std::borrow::Cow;
use std::fmt;

/// A document ElementTree would not parse (`xml.etree.ElementTree.ParseError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong (expat's wording where roxmltree and expat agree on the problem).
    pub message: String,
    /// The line of the problem, from 1.
    pub line: u32,
    /// The column of the problem on its line, in characters from 0.
    pub column: u32,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for ParseError {}

/// `ET.fromstring(text)`: the parsed document; its root element is
/// [`Document::root_element`].
pub fn fromstring(text: &str) -> Result<Document<'_>, ParseError> {
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| parse_error(&e))?;
    check_char_refs(text)?;
    check_reserved(&doc, text)?;
    Ok(doc)
}

/// Fails on what expat refuses and roxmltree lets through: a processing instruction named
/// `xml` (in any case) and a declaration of the `xmlns` prefix.
fn check_reserved(doc: &Document<'_>, text: &str) -> Result<(), ParseError> {
    let at = |needle: &str, message: &str| {
        let offset = text.find(needle).unwrap_or(0);
        let before = &text[..offset];
        ParseError {
            message: message.to_string(),
            line: u32::try_from(before.matches('\n').count() + 1).unwrap_or(u32::MAX),
            column: u32::try_from(before.rsplit('\n').next().unwrap_or("").chars().count())
                .unwrap_or(u32::MAX),
        }
    };
    if text.contains("<?") {
        for n in doc.descendants() {
            if let Some(pi) = n.pi()
                && pi.target.eq_ignore_ascii_case("xml")
            {
                let message = if pi.target == "xml" {
                    "XML or text declaration not at start of entity"
                } else {
                    "not well-formed (invalid token)"
                };
                return Err(at(&format!("<?{}", pi.target), message));
            }
        }
    }
    if text.contains("xmlns:xmlns")
        && doc
            .descendants()
            .any(|n| n.namespaces().any(|ns| ns.name() == Some("xmlns")))
    {
        return Err(at(
            "xmlns:xmlns",
            "reserved prefix (xmlns) must not be declared or undeclared",
        ));
    }
    Ok(())
}

/// Fails on a character reference to a surrogate or past U+10FFFF, which roxmltree reads as
/// U+FFFD and expat refuses. Runs on a well-formed document, so the comments, CDATA sections
/// and processing instructions it skips (where `&#` is no reference) are the real ones.
fn check_char_refs(text: &str) -> Result<(), ParseError> {
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find(['<', '&']) {
        let at = &rest[i..];
        let skip = if at.starts_with("<!--") {
            at.find("-->").map(|e| e + 3)
        } else if at.starts_with("<![CDATA[") {
            at.find("]]>").map(|e| e + 3)
        } else if at.starts_with("<?") {
            at.find("?>").map(|e| e + 2)
        } else if let Some(digits) = at.strip_prefix("&#") {
            let (digits, radix) = match digits.strip_prefix('x') {
                Some(hex) => (hex, 16),
                None => (digits, 10),
            };
            let end = digits.find(';').unwrap_or(digits.len());
            let invalid = u32::from_str_radix(&digits[..end], radix)
                .is_ok_and(|n| (0xD800..=0xDFFF).contains(&n) || n > 0x10FFFF);
            if invalid {
                let before = &text[..offset + i];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count();
                return Err(ParseError {
                    message: "reference to invalid character number".into(),
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    column: u32::try_from(column).unwrap_or(u32::MAX),
                });
            }
            Some(2)
        } else {
            Some(1)
        };
        let step = skip.unwrap_or(at.len());
        offset += i + step;
        rest = &rest[i + step..];
    }
    Ok(())
}

fn parse_error(e: &roxmltree::Error) -> ParseError {
    use roxmltree::Error as E;
    let message = match e {
        E::UnexpectedCloseTag(expected, actual, _) => {
            format!("mismatched tag: expected </{expected}>, found </{actual}>")
        }
        E::UnknownEntityReference(name, _) => format!("undefined entity &{name};"),
        E::MalformedEntityReference(_) => {
            "not well-formed (invalid token): a malformed entity or character reference".into()
        }
        E::InvalidAttributeValue(_) => {
            "not well-formed (invalid token): `<` in an attribute value".into()
        }
        E::DuplicatedAttribute(name, _) => format!("duplicate attribute {name}"),
        E::UnknownNamespace(prefix, _) => format!("unbound prefix {prefix}"),
        E::NoRootNode => "no element found".into(),
        E::UnclosedRootNode => "unclosed element".into(),
        E::UnexpectedDeclaration(_) => "XML or text declaration not at start of entity".into(),
        E::DtdDetected => "not well-formed (invalid token): a document type declaration".into(),
        E::NodesLimitReached => "too many nodes".into(),
        E::InvalidName(_) => "not well-formed (invalid token): an invalid name".into(),
        E::NonXmlChar(c, _) => format!(
            "not well-formed (invalid token): U+{:04X} is not an XML character",
            u32::from(*c)
        ),
        E::InvalidChar(expected, actual, _) => format!(
            "not well-formed (invalid token): expected {:?}, found {:?}",
            char::from(*expected),
            char::from(*actual)
        ),
        E::InvalidChar2(expected, actual, _) => format!(
            "not well-formed (invalid token): expected {expected}, found {:?}",
            char::from(*actual)
        ),
        E::InvalidString(expected, _) => {
            format!("not well-formed (invalid token): expected {expected:?}")
        }
        E::InvalidComment(_) => "not well-formed (invalid token): `--` inside a comment".into(),
        E::InvalidCharacterData(_) => "not well-formed (invalid token): `]]>` in text".into(),
        E::UnknownToken(_) => "not well-formed (invalid token)".into(),
        E::UnexpectedEndOfStream => "unclosed token".into(),
        other => other.to_string(),
    };
    let pos = e.pos();
    ParseError {
        message,
        line: pos.row,
        column: pos.col.saturating_sub(1),
    }
}

/// The element's `tag`: its name, or `{uri}name` when it is in a namespace.
pub fn tag<'a>(node: Node<'a, '_>) -> Cow<'a, str> {
    let name = node.tag_name();
    match name.namespace() {
        Some(uri) => Cow::Owned(format!("{{{uri}}}{}", name.name())),
        None => Cow::Borrowed(name.name()),
    }
}

/// The element's child elements, in order (`list(element)`).
pub fn children<'a, 'input>(
    node: Node<'a, 'input>,
) -> impl Iterator<Item = Node<'a, 'input>> + Clone {
    node.children().filter(Node::is_element)
}

/// Whether the element has child elements (`bool(list(element))`).
pub fn has_children(node: Node<'_, '_>) -> bool {
    children(node).next().is_some()
}

/// The element's `text`: the character data before its first child element, `None` when
/// there is none.
pub fn text(node: Node<'_, '_>) -> Option<String> {
    collect_text(node.children())
}

/// The element's `tail`: the character data after it, up to its next sibling element.
pub fn tail(node: Node<'_, '_>) -> Option<String> {
    collect_text(node.next_siblings().skip(1))
}

/// The text of the text nodes at the start of `nodes`, across comments and processing
/// instructions, up to the first element.
fn collect_text<'a, 'input: 'a>(nodes: impl Iterator<Item = Node<'a, 'input>>) -> Option<String> {
    let mut out: Option<String> = None;
    for n in nodes {
        if n.is_element() {
            break;
        }
        if let Some(t) = n.text().filter(|_| n.is_text()) {
            out.get_or_insert_with(String::new).push_str(t);
        }
    }
    out
}

/// The value of the element's attribute `name` (no namespace), as `element.attrib.get(name)`.
pub fn attribute<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attribute(name)
}

/// The prefixes ElementTree's serializer knows (`_namespace_map`).
const WELL_KNOWN: &[(&str, &str)] = &[
    ("http://www.w3.org/XML/1998/namespace", "xml"),
    ("http://www.w3.org/1999/xhtml", "html"),
    ("http://www.w3.org/1999/02/22-rdf-syntax-ns#", "rdf"),
    ("http://schemas.xmlsoap.org/wsdl/", "wsdl"),
    ("http://www.w3.org/2001/XMLSchema", "xs"),
    ("http://www.w3.org/2001/XMLSchema-instance", "xsi"),
    ("http://purl.org/dc/elements/1.1/", "dc"),
];

/// ElementTree's `_namespaces`: the prefix of every namespace used in the subtree (tags, then
/// attribute names, element by element in document order), `xml` excepted.
struct Prefixes<'a> {
    by_uri: Vec<(&'a str, String)>,
}

impl<'a> Prefixes<'a> {
    fn of(root: Node<'a, '_>) -> Self {
        let mut p = Prefixes { by_uri: Vec::new() };
        for n in root.descendants().filter(Node::is_element) {
            if let Some(uri) = n.tag_name().namespace() {
                p.add(uri);
            }
            for a in n.attributes() {
                if let Some(uri) = a.namespace() {
                    p.add(uri);
                }
            }
        }
        p
    }

    fn add(&mut self, uri: &'a str) {
        if self.by_uri.iter().any(|(u, _)| *u == uri) {
            return;
        }
        let prefix = WELL_KNOWN
            .iter()
            .find(|(u, _)| *u == uri)
            .map(|(_, p)| (*p).to_string())
            .unwrap_or_else(|| format!("ns{}", self.by_uri.len()));
        if prefix != "xml" {
            self.by_uri.push((uri, prefix));
        }
    }

    fn write_name(&self, out: &mut String, uri: Option<&str>, local: &str) {
        if let Some(uri) = uri {
            let prefix = if uri == WELL_KNOWN[0].0 {
                "xml"
            } else {
                self.by_uri
                    .iter()
                    .find(|(u, _)| *u == uri)
                    .map_or("", |(_, p)| p.as_str())
            };
            out.push_str(prefix);
            out.push(':');
        }
        out.push_str(local);
    }
}

/// `ET.tostring(element, encoding="unicode")`: the element, its subtree and its tail. Walks
/// the tree without recursion, so any depth serializes.
pub fn tostring(node: Node<'_, '_>) -> String {
    let prefixes = Prefixes::of(node);
    let mut out = String::new();
    // (element, whether its start tag is written)
    let mut stack: Vec<(Node<'_, '_>, bool)> = vec![(node, false)];
    while let Some((n, opened)) = stack.pop() {
        if opened {
            out.push_str("</");
            prefixes.write_name(&mut out, n.tag_name().namespace(), n.tag_name().name());
            out.push('>');
            write_tail(&mut out, n);
            continue;
        }
        out.push('<');
        prefixes.write_name(&mut out, n.tag_name().namespace(), n.tag_name().name());
        if n == node {
            let mut declared: Vec<&(&str, String)> = prefixes.by_uri.iter().collect();
            declared.sort_by(|a, b| a.1.cmp(&b.1));
            for (uri, prefix) in declared {
                out.push_str(" xmlns:");
                out.push_str(prefix);
                out.push_str("=\"");
                escape_attrib(&mut out, uri);
                out.push('"');
            }
        }
        for a in n.attributes() {
            out.push(' ');
            prefixes.write_name(&mut out, a.namespace(), a.name());
            out.push_str("=\"");
            escape_attrib(&mut out, a.value());
            out.push('"');
        }
        let text = text(n).filter(|t| !t.is_empty());
        if text.is_none() && !has_children(n) {
            out.push_str(" />");
            write_tail(&mut out, n);
            continue;
        }
        out.push('>');
        if let Some(t) = text {
            escape_cdata(&mut out, &t);
        }
        stack.push((n, true));
        let kids: Vec<_> = children(n).collect();
        stack.extend(kids.into_iter().rev().map(|k| (k, false)));
    }
    out
}

/// Writes `n`'s tail (the top element's too, as `tostring` does).
fn write_tail(out: &mut String, n: Node<'_, '_>) {
    if let Some(t) = tail(n).filter(|t| !t.is_empty()) {
        escape_cdata(out, &t);
    }
}

/// `_escape_cdata`: `&`, `<`, `>` as entities.
fn escape_cdata(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// `_escape_attrib`: `&`, `<`, `>`, `"` as entities, `\r`, `\n`, `\t` as character references.
fn escape_attrib(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#09;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Document<'_> {
        fromstring(text).expect("parses")
    }

    fn inner(text: &str) -> String {
        let wrapped = format!("<r>{text}</r>");
        let doc = root(&wrapped);
        let r = doc.root_element();
        let mut out = super::text(r).unwrap_or_default();
        for c in children(r) {
            out.push_str(&tostring(c));
        }
        out
    }

    #[test]
    fn text_and_tail_as_elementtree() {
        let doc = root("<r>a<!--c-->b<x>t<?p q?>u</x>c<!--d-->e<y/></r>");
        let r = doc.root_element();
        assert_eq!(text(r).as_deref(), Some("ab"));
        let kids: Vec<_> = children(r).collect();
        assert_eq!(text(kids[0]).as_deref(), Some("tu"));
        assert_eq!(tail(kids[0]).as_deref(), Some("ce"));
        assert_eq!(tail(kids[1]), None);
        let doc = root("<r><x><![CDATA[<&>]]>t\r\nu\rv &amp;&lt;&#65;&#x42;</x></r>");
        let x = children(doc.root_element()).next().expect("a child");
        assert_eq!(text(x).as_deref(), Some("<&>t\nu\nv &<AB"));
    }

    #[test]
    fn namespaced_tags() {
        let doc = root("<r><x xmlns='u'>1</x><p:y xmlns:p='v'/></r>");
        let tags: Vec<_> = children(doc.root_element())
            .map(|n| tag(n).into_owned())
            .collect();
        assert_eq!(tags, ["{u}x", "{v}y"]);
    }

    #[test]
    fn tostring_as_elementtree() {
        assert_eq!(
            inner("x<b k='v&amp;&lt;&gt;&quot;\n' z=\"'\">t&amp;&lt;&gt;\"'</b>tail<c/>t2<d></d>"),
            "x<b k=\"v&amp;&lt;&gt;&quot; \" z=\"'\">t&amp;&lt;&gt;\"'</b>tail<c />t2<d />"
        );
        assert_eq!(
            inner("x<p:b xmlns:p='urn:x'>1<p:c/></p:b>z<q:b xmlns:q='urn:y'/><r xmlns='urn:x'/>"),
            "x<ns0:b xmlns:ns0=\"urn:x\">1<ns0:c /></ns0:b>z<ns0:b xmlns:ns0=\"urn:y\" /><ns0:r xmlns:ns0=\"urn:x\" />"
        );
        assert_eq!(
            inner("<b xml:lang='en'/><h xmlns='http://www.w3.org/1999/xhtml'/>"),
            "<b xml:lang=\"en\" /><html:h xmlns:html=\"http://www.w3.org/1999/xhtml\" />"
        );
        assert_eq!(
            inner("<b a='1' xmlns:p='u' p:c='2'/>"),
            "<b xmlns:ns0=\"u\" a=\"1\" ns0:c=\"2\" />"
        );
        assert_eq!(
            inner("<b c='&#9;&#13;&#10;'/>"),
            "<b c=\"&#09;&#13;&#10;\" />"
        );
        assert_eq!(inner("<b>\r\n\t</b>"), "<b>\n\t</b>");
    }

    #[test]
    fn not_well_formed() {
        for bad in [
            "<r>&nbsp;</r>",
            "<r>&#0;</r>",
            "<r>\u{1}</r>",
            "<r>\u{fffe}</r>",
            "<r><a:x/></r>",
            "<r><x a='1' a='2'/></r>",
            "<r>]]></r>",
            "<r><?xml version='1.0'?></r>",
            "<r></r><x/>",
            "<r><x></y></r>",
            "<r><x></r>",
            "<r><x a=\"<\"/></r>",
            "<r><!DOCTYPE x></r>",
            "<r><1x/></r>",
            "<r>a & b</r>",
            "<r>a < b</r>",
            "<r><!-- a -- b --></r>",
            "<r>&#65</r>",
            "<r>&#xD800;</r>",
            "<r><?xml?></r>",
            "<r><?XmL x?></r>",
            "<r xmlns:xmlns='u'/>",
            "<r a='&#1114112;'/>",
            "<r></r",
            "",
        ] {
            let e = fromstring(bad).expect_err(bad);
            assert!(!e.message.is_empty(), "{bad:?}");
        }
        let e = fromstring("<r><x></y></r>").expect_err("mismatched");
        assert_eq!(
            e.to_string(),
            format!(
                "mismatched tag: expected </x>, found </y>: line 1, column {}",
                e.column
            )
        );
    }

    #[test]
    fn reserved_names_only_where_they_are_markup() {
        let doc = root("<r>xmlns:xmlns <?xml-stylesheet x?><?xmlfoo?>&lt;?xml?></r>");
        assert_eq!(
            text(doc.root_element()).as_deref(),
            Some("xmlns:xmlns <?xml?>")
        );
    }

    #[test]
    fn character_references_outside_markup_only() {
        let doc = root("<r><!-- &#xD800; --><![CDATA[&#xD800;]]><?p &#xD800;?>&#x10FFFF;</r>");
        assert_eq!(
            text(doc.root_element()).as_deref(),
            Some("&#xD800;\u{10ffff}")
        );
        let e = fromstring("<r>\n  &#xDFFF;</r>").expect_err("a surrogate");
        assert_eq!(
            e.to_string(),
            "reference to invalid character number: line 2, column 2"
        );
    }

    #[test]
    fn deep_documents_parse_and_serialize() {
        let depth = 50_000;
        let text = format!("<r>{}{}</r>", "<a>".repeat(depth), "</a>".repeat(depth));
        let doc = root(&text);
        let first = children(doc.root_element()).next().expect("a child");
        assert_eq!(
            tostring(first).len(),
            "<a></a>".len() * (depth - 1) + "<a />".len()
        );
    }
}
