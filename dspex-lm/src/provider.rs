//! DSPy model names (`openai/gpt-4o-mini`, `ollama_chat/llama3`, `hosted_vllm/…`,
//! `gemini/gemini-2.5-flash`) mapped to endpoints and the protocol they speak.

use super::error::LmError;
use super::protocol::{Protocol, gemini::Gemini, openai::OpenAi};

/// Chat or text completions, as `dspy.LM(model_type=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelType {
    /// `/chat/completions`.
    Chat,
    /// `/completions` (the messages' contents joined into one prompt).
    Text,
}

/// Where and how to reach a model.
#[derive(Debug, Clone)]
pub(crate) struct Provider {
    /// The wire protocol its API speaks.
    pub(crate) protocol: &'static dyn Protocol,
    /// The provider prefix (`openai`).
    pub(crate) name: &'static str,
    /// The model id sent to the server (the prefix stripped).
    pub(crate) model_id: String,
    /// The base URL without a trailing slash (`https://api.openai.com/v1`); `None` when it must be
    /// configured.
    pub(crate) default_base: Option<String>,
    /// Environment variables that may hold the base URL, in order.
    pub(crate) base_env: &'static [&'static str],
    /// Environment variables that may hold the key, in order.
    pub(crate) key_env: &'static [&'static str],
    /// Whether the provider insists on a key.
    pub(crate) key_required: bool,
    /// The default model type.
    pub(crate) model_type: ModelType,
    /// The body key for the token limit (OpenAI renames `max_tokens`).
    pub(crate) max_tokens_key: &'static str,
}

/// Parses a DSPy model string.
pub(crate) fn resolve(model: &str) -> Result<Provider, LmError> {
    let config = |message: String| LmError::Config {
        model: model.to_string(),
        message,
    };
    let (prefix, id) = match model.split_once('/') {
        Some((p, id)) => (p, id),
        None => ("openai", model),
    };
    if id.trim().is_empty() {
        return Err(config(format!(
            "the model string needs a model after the provider, e.g. `{prefix}/gpt-4o-mini`"
        )));
    }
    let mut p = Provider {
        protocol: &OpenAi,
        name: "openai",
        model_id: id.to_string(),
        default_base: Some("https://api.openai.com/v1".to_string()),
        base_env: &["OPENAI_API_BASE", "OPENAI_BASE_URL"],
        key_env: &["OPENAI_API_KEY"],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_completion_tokens",
    };
    match prefix {
        "openai" => {}
        "ollama_chat" | "ollama" => {
            p.name = if prefix == "ollama" {
                "ollama"
            } else {
                "ollama_chat"
            };
            p.default_base = Some("http://localhost:11434/v1".to_string());
            p.base_env = &["OLLAMA_API_BASE"];
            p.key_env = &["OLLAMA_API_KEY"];
            p.key_required = false;
            p.max_tokens_key = "max_tokens";
            if prefix == "ollama" {
                p.model_type = ModelType::Text;
            }
        }
        "hosted_vllm" => {
            p.name = "hosted_vllm";
            p.default_base = None;
            p.base_env = &["HOSTED_VLLM_API_BASE"];
            p.key_env = &["HOSTED_VLLM_API_KEY"];
            p.key_required = false;
            p.max_tokens_key = "max_tokens";
        }
        "lm_studio" => {
            p.name = "lm_studio";
            p.default_base = Some("http://localhost:1234/v1".to_string());
            p.base_env = &["LM_STUDIO_API_BASE"];
            p.key_env = &["LM_STUDIO_API_KEY"];
            p.key_required = false;
            p.max_tokens_key = "max_tokens";
        }
        "gemini" => {
            // Google AI Studio, as DSPy 3.4.1's client (lm15) reaches it: the key from
            // GEMINI_API_KEY then GOOGLE_API_KEY, a proxy's base from GEMINI_API_BASE (LiteLLM's
            // name), which includes the API version as the default does.
            p.protocol = &Gemini;
            p.name = "gemini";
            p.default_base = Some("https://generativelanguage.googleapis.com/v1beta".to_string());
            p.base_env = &["GEMINI_API_BASE"];
            p.key_env = &["GEMINI_API_KEY", "GOOGLE_API_KEY"];
            p.max_tokens_key = "max_tokens";
        }
        other => {
            return Err(config(format!(
                "provider `{other}` is not one dspex reaches: dspex speaks the OpenAI protocol and Gemini's; use `openai/<model>` with `api_base` for any OpenAI-compatible server (vLLM, llama.cpp, …), `gemini/<model>` for Google AI Studio, or one of ollama_chat/, ollama/, hosted_vllm/, lm_studio/"
            )));
        }
    }
    Ok(p)
}

/// `http://host:port` → `http://host:port/v1` for providers whose env var omits it (Ollama);
/// strips a trailing slash.
pub(crate) fn normalize_base(provider: &Provider, base: &str) -> String {
    let base = base.trim_end_matches('/');
    if provider.name.starts_with("ollama") && !base.ends_with("/v1") {
        format!("{base}/v1")
    } else {
        base.to_string()
    }
}

/// The base URL with any `user:password@` removed, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dspy_model_names() {
        let p = resolve("openai/gpt-4o-mini").unwrap();
        assert_eq!(p.model_id, "gpt-4o-mini");
        assert_eq!(p.default_base.as_deref(), Some("https://api.openai.com/v1"));
        assert_eq!(p.max_tokens_key, "max_completion_tokens");
        let p = resolve("ollama_chat/llama3.2:1b").unwrap();
        assert_eq!(p.model_id, "llama3.2:1b");
        assert_eq!(p.model_type, ModelType::Chat);
        assert_eq!(
            normalize_base(&p, "http://localhost:11434/"),
            "http://localhost:11434/v1"
        );
        assert_eq!(
            resolve("ollama/llama3").unwrap().model_type,
            ModelType::Text
        );
        assert!(
            resolve("hosted_vllm/Qwen/Qwen2.5-7B")
                .unwrap()
                .default_base
                .is_none()
        );
        assert_eq!(
            resolve("hosted_vllm/Qwen/Qwen2.5-7B").unwrap().model_id,
            "Qwen/Qwen2.5-7B"
        );
        assert_eq!(resolve("gpt-4o").unwrap().name, "openai");
        assert!(matches!(resolve("openai/"), Err(LmError::Config { .. })));
        let err = resolve("vertex_ai/gemini-2.5-pro").unwrap_err().to_string();
        assert!(err.contains("provider `vertex_ai`"), "{err}");
        assert!(err.contains("`gemini/<model>`"), "{err}");
    }

    #[test]
    fn gemini_model_names() {
        let p = resolve("gemini/gemini-2.5-flash").unwrap();
        assert_eq!(p.protocol.name(), "gemini");
        assert_eq!(p.model_id, "gemini-2.5-flash");
        assert_eq!(
            p.default_base.as_deref(),
            Some("https://generativelanguage.googleapis.com/v1beta")
        );
        assert_eq!(p.key_env, ["GEMINI_API_KEY", "GOOGLE_API_KEY"]);
        assert_eq!(p.base_env, ["GEMINI_API_BASE"]);
        assert!(p.key_required);
        assert_eq!(p.model_type, ModelType::Chat);
        assert_eq!(
            normalize_base(&p, "http://127.0.0.1:9/v1beta/"),
            "http://127.0.0.1:9/v1beta"
        );
        assert!(matches!(resolve("gemini/"), Err(LmError::Config { .. })));
    }

    #[test]
    fn urls_lose_credentials() {
        assert_eq!(
            redact_url("https://u:p@host:8000/v1"),
            "https://host:8000/v1"
        );
        assert_eq!(redact_url("http://127.0.0.1:9/v1"), "http://127.0.0.1:9/v1");
        assert_eq!(redact_url("http://h"), "http://h");
    }
}
