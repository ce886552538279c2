//! Expansion snapshots of every form, taken at the `proc_macro2` level and formatted with
//! prettyplease. A change to generated code shows up as a reviewable snapshot diff.

use proc_macro2::TokenStream;
use quote::quote;

fn pretty(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
    prettyplease::unparse(&file)
}

#[test]
fn string_form_untyped() {
    let out = crate::signature::attribute(
        quote!("question -> answer"),
        quote!(
            pub struct QA;
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn string_form_rust_types() {
    let out = crate::signature::attribute(
        quote!("question: String, context: Vec<String> -> answer: String, confidence: f64"),
        quote!(
            struct ContextQA;
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn string_form_dspy_types_with_literal_and_options() {
    let out = crate::signature::attribute(
        quote!(
            "sentence: str, hint: Optional[str] -> sentiment: Literal['positive', 'negative'], counts: dict[str, int], citation: Citation",
            instructions = "Classify the sentence.",
            derive(Default)
        ),
        quote!(
            /// Ignored: `instructions` wins over the doc comment.
            pub(crate) struct Review;
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn string_form_dspy_special_types() {
    let out = crate::signature::attribute(
        quote!("image: Image, photos: list[dspy.Image], history: dspy.History, question -> answer"),
        quote!(
            pub struct VisualChat;
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn string_form_code_and_reasoning() {
    let out = crate::signature::attribute(
        quote!(
            "task: str, snippet: dspy.Code['rust'] -> reasoning: dspy.Reasoning, code: Code[\"python\"], scripts: list[Code_haskell]"
        ),
        quote!(
            pub struct WriteCode;
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn field_form_code_and_reasoning() {
    let out = crate::signature::attribute(
        quote!(),
        quote!(
            /// Write a Python function for the task.
            pub struct CodeGen {
                #[input]
                task: String,
                #[output]
                reasoning: Reasoning,
                #[output]
                code: Code<dspex::lang::Python>,
            }
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn field_form_image_and_history() {
    let out = crate::signature::attribute(
        quote!(),
        quote!(
            /// Answer about the image, given the conversation so far.
            pub struct VisualQA {
                #[input]
                image: Image,
                #[input]
                history: dspex::History,
                #[input]
                question: String,
                #[output]
                answer: String,
            }
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn field_form() {
    let out = crate::signature::attribute(
        quote!(),
        quote!(
            /// Answer questions with short factoid answers.
            pub struct QA {
                #[input(desc = "a trivia question")]
                question: String,
                /// Passages that may help.
                #[input]
                context: Vec<String>,
                #[output(desc = "often 1-5 words", prefix = "Final Answer:")]
                answer: Option<Citation>,
            }
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn function_like_form() {
    let out = crate::signature::function_like(quote!(
        /// Summaries.
        pub Summarize: "document -> summary", instructions = "Summarize in one sentence.", crate = my_dspex
    ));
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn errors_keep_fallback_items() {
    // Every mistake is reported, and the structs and impl are still generated so uses of them
    // do not fail a second time.
    let out = crate::signature::attribute(
        quote!("question, question -> answer: Vec<"),
        quote!(
            struct QA;
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn derive_module() {
    let out = crate::module::derive(quote!(
        struct Rag<R> {
            generate_query: ChainOfThought<GenerateQuery>,
            answer: Predict<Answer>,
            hops: Vec<Predict<Hop>>,
            #[module(skip)]
            retriever: R,
        }
    ));
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn derive_literal_enum() {
    let out = crate::literal_enum::derive(quote!(
        #[literal(rename_all = "lowercase")]
        enum Sentiment {
            Positive,
            Negative,
            #[literal(rename = "meh")]
            Neutral,
        }
    ));
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn derive_literal_enum_with_own_serde() {
    let out = crate::literal_enum::derive(quote!(
        #[literal(serde = false)]
        #[serde(rename_all = "lowercase")]
        enum Sentiment {
            Positive,
            #[serde(rename = "meh")]
            Neutral,
        }
    ));
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn tool_async_with_doc() {
    let out = crate::tool::attribute(
        quote!(),
        quote!(
            /// Add two integers.
            pub async fn add(a: i64, b: i64) -> i64 {
                a + b
            }
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn tool_sync_result_with_options() {
    let out = crate::tool::attribute(
        quote!(name = "lookup_fact", desc = "Look up a fact by its key."),
        quote!(
            fn lookup(key: String) -> Result<String, LookupError> {
                Err(LookupError)
            }
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn tools_list_names_and_values() {
    let out = crate::tool::list(quote!(
        calculator,
        agents::lookup,
        search_tool(&retriever, 3),
    ));
    insta::assert_snapshot!(pretty(quote!(
        fn tools() {
            let _ = #out;
        }
    )));
}
