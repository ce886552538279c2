//! DSPy model names (`openai/gpt-4o-mini`, `ollama_chat/llama3`, `hosted_vllm/…`,
//! `gemini/gemini-2.5-flash`) mapped to endpoints and the protocol they speak.

use super::error::LmError;
use super::protocol::{
    Protocol, anthropic::Anthropic, azure::AzureOpenAi, gemini::Gemini, openai::OpenAi,
};

/// Chat or text completions, as `dspy.LM(model_type=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelType {
    /// `/chat/completions`.
    Chat,
    /// `/completions` (the messages' contents joined into one prompt).
    Text,
    /// `/responses`, OpenAI's Responses API (DSPy's `model_type="responses"`): for OpenAI and
    /// the OpenAI-compatible providers that serve it.
    Responses,
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

/// An OpenAI-compatible provider: its prefix, where it lives and which variables hold its base
/// URL and key, as LiteLLM (which DSPy's model strings come from) reads them.
struct Compatible {
    prefix: &'static str,
    base: Option<&'static str>,
    base_env: &'static [&'static str],
    key_env: &'static [&'static str],
    key_required: bool,
    model_type: ModelType,
    max_tokens_key: &'static str,
}

/// Every OpenAI-compatible provider dspex reaches by prefix. The README's provider table lists
/// them; a server not listed here is reached as `openai/<model>` with an `api_base`.
const COMPATIBLE: &[Compatible] = &[
    Compatible {
        prefix: "openai",
        base: Some("https://api.openai.com/v1"),
        base_env: &["OPENAI_API_BASE", "OPENAI_BASE_URL"],
        key_env: &["OPENAI_API_KEY"],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_completion_tokens",
    },
    Compatible {
        prefix: "openrouter",
        base: Some("https://openrouter.ai/api/v1"),
        base_env: &["OPENROUTER_API_BASE"],
        key_env: &["OPENROUTER_API_KEY", "OR_API_KEY"],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "groq",
        base: Some("https://api.groq.com/openai/v1"),
        base_env: &["GROQ_API_BASE"],
        key_env: &["GROQ_API_KEY"],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "together_ai",
        base: Some("https://api.together.ai/v1"),
        base_env: &["TOGETHER_AI_API_BASE"],
        key_env: &[
            "TOGETHER_API_KEY",
            "TOGETHER_AI_API_KEY",
            "TOGETHERAI_API_KEY",
            "TOGETHER_AI_TOKEN",
        ],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "deepseek",
        // LiteLLM's default: DeepSeek's beta endpoint (longer outputs, same API).
        base: Some("https://api.deepseek.com/beta"),
        base_env: &["DEEPSEEK_API_BASE"],
        key_env: &["DEEPSEEK_API_KEY"],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "mistral",
        base: Some("https://api.mistral.ai/v1"),
        base_env: &["MISTRAL_API_BASE"],
        key_env: &["MISTRAL_API_KEY"],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "xai",
        base: Some("https://api.x.ai/v1"),
        base_env: &["XAI_API_BASE"],
        key_env: &["XAI_API_KEY"],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "fireworks_ai",
        base: Some("https://api.fireworks.ai/inference/v1"),
        base_env: &["FIREWORKS_API_BASE"],
        key_env: &[
            "FIREWORKS_API_KEY",
            "FIREWORKS_AI_API_KEY",
            "FIREWORKSAI_API_KEY",
            "FIREWORKS_AI_TOKEN",
        ],
        key_required: true,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "ollama_chat",
        base: Some("http://localhost:11434/v1"),
        base_env: &["OLLAMA_API_BASE"],
        key_env: &["OLLAMA_API_KEY"],
        key_required: false,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "ollama",
        base: Some("http://localhost:11434/v1"),
        base_env: &["OLLAMA_API_BASE"],
        key_env: &["OLLAMA_API_KEY"],
        key_required: false,
        model_type: ModelType::Text,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "hosted_vllm",
        base: None,
        base_env: &["HOSTED_VLLM_API_BASE"],
        key_env: &["HOSTED_VLLM_API_KEY"],
        key_required: false,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
    Compatible {
        prefix: "lm_studio",
        base: Some("http://localhost:1234/v1"),
        base_env: &["LM_STUDIO_API_BASE"],
        key_env: &["LM_STUDIO_API_KEY"],
        key_required: false,
        model_type: ModelType::Chat,
        max_tokens_key: "max_tokens",
    },
];

/// The prefixes dspex reaches, for messages.
pub(crate) fn known_prefixes() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = COMPATIBLE.iter().map(|c| c.prefix).collect();
    all.push("azure");
    all.push("anthropic");
    all.push("gemini");
    all
}

/// Whether `model` is one of OpenAI's reasoning models (the o1/o3/o4/o5 and gpt-5 families,
/// not `gpt-5-chat`), whatever its prefix: DSPy's `_is_openai_reasoning_model`.
pub(crate) fn is_openai_reasoning_model(model: &str) -> bool {
    let family = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let date_suffix = |rest: &str| {
        // `-YYYY-MM-DD`
        let b = rest.as_bytes();
        b.len() == 11
            && b[0] == b'-'
            && b[5] == b'-'
            && b[8] == b'-'
            && [1, 2, 3, 4, 6, 7, 9, 10]
                .iter()
                .all(|&i| b[i].is_ascii_digit())
    };
    if let Some(rest) = family.strip_prefix('o')
        && let Some(digit) = rest.chars().next()
        && "1345".contains(digit)
    {
        let mut rest = &rest[1..];
        for size in ["-mini", "-nano", "-pro"] {
            if let Some(r) = rest.strip_prefix(size) {
                rest = r;
                break;
            }
        }
        return rest.is_empty() || date_suffix(rest);
    }
    if let Some(rest) = family.strip_prefix("gpt-5") {
        // `gpt-5(\.\d+)*` then nothing or `-…`, except `-chat` right after the version.
        let mut rest = rest;
        while let Some(r) = rest.strip_prefix('.') {
            let digits = r.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                return false;
            }
            rest = &r[digits..];
        }
        return rest.is_empty() || (rest.starts_with('-') && !rest.starts_with("-chat"));
    }
    false
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
    let mut provider = match prefix {
        // Anthropic's Messages API: the key from ANTHROPIC_API_KEY, a proxy's base from
        // ANTHROPIC_API_BASE or ANTHROPIC_BASE_URL (LiteLLM's and the SDK's names).
        "anthropic" => Provider {
            protocol: &Anthropic,
            name: "anthropic",
            model_id: id.to_string(),
            default_base: Some("https://api.anthropic.com/v1".to_string()),
            base_env: &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
            key_env: &["ANTHROPIC_API_KEY"],
            key_required: true,
            model_type: ModelType::Chat,
            max_tokens_key: "max_tokens",
        },
        // Google AI Studio, as DSPy 3.4.1's client (lm15) reaches it: the key from
        // GEMINI_API_KEY then GOOGLE_API_KEY, a proxy's base from GEMINI_API_BASE (LiteLLM's
        // name), which includes the API version as the default does.
        "gemini" => Provider {
            protocol: &Gemini,
            name: "gemini",
            model_id: id.to_string(),
            default_base: Some("https://generativelanguage.googleapis.com/v1beta".to_string()),
            base_env: &["GEMINI_API_BASE"],
            key_env: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            key_required: true,
            model_type: ModelType::Chat,
            max_tokens_key: "max_tokens",
        },
        "azure" => Provider {
            protocol: &AzureOpenAi,
            name: "azure",
            model_id: id.to_string(),
            default_base: None,
            base_env: &["AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT"],
            key_env: &["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"],
            key_required: true,
            model_type: ModelType::Chat,
            max_tokens_key: "max_tokens",
        },
        _ => {
            let Some(c) = COMPATIBLE.iter().find(|c| c.prefix == prefix) else {
                return Err(config(format!(
                    "provider `{prefix}` is not one dspex reaches: use one of {}, or `openai/<model>` with `api_base` for any OpenAI-compatible server (vLLM, llama.cpp, a LiteLLM proxy, …)",
                    known_prefixes().join("/, ") + "/"
                )));
            };
            Provider {
                protocol: &OpenAi,
                name: c.prefix,
                model_id: id.to_string(),
                default_base: c.base.map(str::to_string),
                base_env: c.base_env,
                key_env: c.key_env,
                key_required: c.key_required,
                model_type: c.model_type,
                max_tokens_key: c.max_tokens_key,
            }
        }
    };
    // DSPy sends reasoning models' limit as `max_completion_tokens`, whatever the provider.
    if is_openai_reasoning_model(model) {
        provider.max_tokens_key = "max_completion_tokens";
    }
    Ok(provider)
}

/// `http://host:port` → `http://host:port/v1` for providers whose env var omits it (Ollama,
/// and Anthropic, whose base LiteLLM takes without `/v1` — `…/v1/messages` is cut back to
/// `…/v1`); strips a trailing slash.
pub(crate) fn normalize_base(provider: &Provider, base: &str) -> String {
    let base = base.trim_end_matches('/');
    if provider.name == "anthropic" {
        let base = base.strip_suffix("/messages").unwrap_or(base);
        return if base.ends_with("/v1") {
            base.to_string()
        } else {
            format!("{base}/v1")
        };
    }
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
        assert!(err.contains("groq/"), "{err}");
        assert!(err.contains("gemini/"), "{err}");
        assert!(err.contains("anthropic/"), "{err}");
        let p = resolve("anthropic/claude-sonnet-4-5").unwrap();
        assert_eq!(p.protocol.name(), "anthropic");
        assert_eq!(p.model_id, "claude-sonnet-4-5");
        assert_eq!(
            p.default_base.as_deref(),
            Some("https://api.anthropic.com/v1")
        );
        assert_eq!(p.key_env, ["ANTHROPIC_API_KEY"]);
        assert_eq!(p.base_env[0], "ANTHROPIC_API_BASE");
        assert!(p.key_required);
        for (base, normalized) in [
            ("https://api.anthropic.com", "https://api.anthropic.com/v1"),
            (
                "https://api.anthropic.com/v1/",
                "https://api.anthropic.com/v1",
            ),
            (
                "http://127.0.0.1:4000/v1/messages",
                "http://127.0.0.1:4000/v1",
            ),
            ("http://proxy/anthropic", "http://proxy/anthropic/v1"),
        ] {
            assert_eq!(normalize_base(&p, base), normalized);
        }
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
