//! [`search_tool`]: a retriever as a ReAct tool. It lives with the tools, so the retrieval layer
//! never names the module layer.

use super::tool::Tool;
use crate::retrieve::{RetrieveError, Retriever, SEARCH_TOOL_DESC};
use serde::Deserialize;
use std::sync::Arc;

/// The arguments of [`search_tool`].
#[derive(Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// The search query.
    query: String,
}

/// A retriever as a ReAct [`Tool`] named `search`: it takes a `query` and returns the texts of the
/// `k` best passages. Rename it with [`Tool::with_name`]; a failed search is reported to the model
/// as the observation.
///
/// ```
/// use dspex_runtime::module::search_tool;
/// use dspex_runtime::retrieve::{Passage, RetrieveError, Retriever};
/// use futures_util::future::BoxFuture;
///
/// struct Wiki;
/// impl Retriever for Wiki {
///     fn retrieve<'a>(&'a self, _query: &'a str, _k: usize)
///         -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
///         Box::pin(std::future::ready(Ok(vec![Passage::new("1", "Ada Lovelace", 1.0)])))
///     }
/// }
///
/// let tool = search_tool(Wiki, 3);
/// assert_eq!(tool.name(), "search");
/// assert!(tool.args().contains_key("query"));
/// ```
pub fn search_tool<R: Retriever + 'static>(retriever: R, k: usize) -> Tool {
    let retriever = Arc::new(retriever);
    Tool::from_macro("search", move |args: SearchArgs| {
        let retriever = Arc::clone(&retriever);
        async move {
            let passages = retriever.retrieve(&args.query, k).await?;
            Ok::<_, RetrieveError>(passages.into_iter().map(|p| p.text).collect::<Vec<_>>())
        }
    })
    .with_desc(SEARCH_TOOL_DESC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrieve::tests::{Failing, fixed};
    use serde_json::{Map, Value};

    #[tokio::test]
    async fn search_tool_returns_texts_and_reports_failures() {
        let tool = search_tool(fixed(), 1);
        assert_eq!(tool.desc(), Some(SEARCH_TOOL_DESC));
        let mut args = Map::new();
        args.insert("query".into(), Value::from("anything"));
        assert_eq!(
            tool.call(args.clone()).await.unwrap(),
            serde_json::json!(["first"])
        );
        let err = search_tool(Failing, 1).call(args).await.unwrap_err();
        assert!(err.to_string().contains("index offline"), "{err}");
    }
}
