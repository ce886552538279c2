// A user struct deriving serde and `schemars::JsonSchema` is a field type as it is (DSPy's
// pydantic model), with its JSON schema in the metadata.
use dspex::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Citation {
    title: String,
    year: i64,
}

#[signature]
struct Cite {
    #[input]
    claim: String,
    #[output(desc = "the best source")]
    citation: Citation,
    #[output]
    others: Vec<Citation>,
    #[output]
    maybe: Option<Citation>,
}

#[signature("claim -> citation: Citation")]
struct CiteFromString;

fn main() {
    let out = Cite::output_fields();
    assert_eq!(out[0].dspy_type(), "Citation");
    assert_eq!(out[1].dspy_type(), "list[Citation]");
    assert_eq!(out[2].dspy_type(), "Union[Citation, NoneType]");
    let schema = out[0].json_schema().expect("a model has a JSON schema");
    assert!(schema.to_string().contains("year"), "{schema}");

    assert_eq!(CiteFromString::output_fields()[0].dspy_type(), "Citation");
    assert!(CiteFromString::output_fields()[0].json_schema().is_some());

    let output = CiteOutput {
        citation: Citation {
            title: "On Computable Numbers".into(),
            year: 1936,
        },
        others: vec![],
        maybe: None,
    };
    assert_eq!(output.citation.year, 1936);
    assert_eq!(output.citation.title.len(), 21);
    let _ = CiteFromStringOutput {
        citation: output.citation.clone(),
    };
    let _ = CiteInput {
        claim: String::new(),
    };
}
