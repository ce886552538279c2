//! Azure OpenAI: OpenAI's chat and text completion bodies and answers at a deployment's URLs
//! (`{base}/openai/deployments/{deployment}/chat/completions?api-version=…`), with the key in
//! an `api-key` header. The model string's id is the deployment name (`azure/my-gpt-4o`); the
//! base URL (`https://<resource>.openai.azure.com`), key and API version come from the builder
//! or from `AZURE_API_BASE`, `AZURE_API_KEY` and `AZURE_API_VERSION`, as DSPy (through LiteLLM)
//! reads them.

use super::openai::{OpenAi, openai_failure};
use super::{Decoded, Failure, Paths, Protocol, StreamReader, Target};
use crate::provider::ModelType;
use crate::secret::ApiKey;
use crate::types::LmRequest;

/// The API version sent when neither the builder nor `AZURE_API_VERSION` gives one: LiteLLM's
/// default (`litellm.AZURE_DEFAULT_API_VERSION`) in the version DSPy 3.4.1 is tested with.
pub(crate) const DEFAULT_API_VERSION: &str = "2025-02-01-preview";

/// The Azure OpenAI protocol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AzureOpenAi;

impl Protocol for AzureOpenAi {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn paths(&self, target: Target<'_>) -> Paths {
        let version = target.api_version.unwrap_or(DEFAULT_API_VERSION);
        let deployment = encode_segment(target.model_id);
        let at = |what: &str| {
            format!(
                "openai/deployments/{deployment}/{what}?api-version={}",
                encode_segment(version)
            )
        };
        let call = match target.model_type {
            ModelType::Chat => at("chat/completions"),
            ModelType::Text => at("completions"),
            ModelType::Responses => at("responses"),
        };
        Paths {
            stream: call.clone(),
            call,
            embeddings: Some(at("embeddings")),
        }
    }

    fn auth(&self, key: &ApiKey) -> (&'static str, String) {
        ("api-key", key.expose().to_string())
    }

    fn body(
        &self,
        target: Target<'_>,
        request: &LmRequest,
        stream: bool,
    ) -> Result<Vec<u8>, String> {
        OpenAi.body(target, request, stream)
    }

    fn response(&self, target: Target<'_>, body: &[u8]) -> Result<Decoded, String> {
        OpenAi.response(target, body)
    }

    fn stream(&self, target: Target<'_>) -> Box<dyn StreamReader> {
        OpenAi.stream(target)
    }

    fn error(&self, body: &str) -> Failure {
        openai_failure(body)
    }
}

/// `text` as one URL path segment or query value: unreserved characters as they are, every
/// other byte percent-encoded (a deployment name with a space or slash stays one segment).
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_urls_carry_the_api_version() {
        let target = |model_type, api_version| Target {
            model_id: "my gpt/4o",
            model_type,
            max_tokens_key: "max_tokens",
            api_version,
        };
        let paths = AzureOpenAi.paths(target(ModelType::Chat, Some("2024-10-21")));
        assert_eq!(
            paths.call,
            "openai/deployments/my%20gpt%2F4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(paths.stream, paths.call);
        assert_eq!(
            paths.embeddings.as_deref(),
            Some("openai/deployments/my%20gpt%2F4o/embeddings?api-version=2024-10-21")
        );
        let text = AzureOpenAi.paths(target(ModelType::Text, None));
        assert_eq!(
            text.call,
            format!(
                "openai/deployments/my%20gpt%2F4o/completions?api-version={DEFAULT_API_VERSION}"
            )
        );
        let (name, value) = AzureOpenAi.auth(&ApiKey::new("k-1"));
        assert_eq!((name, value.as_str()), ("api-key", "k-1"));
    }
}
