//! [`LmBuilder`]'s settings and [`LmBuilder::build`]: provider, base URL, key, headers, cache,
//! transport and limits resolved into an [`LM`].

use super::*;

impl LmBuilder {
    /// Chat (default) or text completions.
    pub fn model_type(mut self, model_type: ModelType) -> Self {
        self.model_type = Some(model_type);
        self
    }

    /// The API version an Azure OpenAI deployment is called with (`api-version`); without it,
    /// `AZURE_API_VERSION` or `OPENAI_API_VERSION`, else LiteLLM's default (`2025-02-01-preview`).
    /// Ignored by other providers.
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }

    /// Whether the model reasons natively and returns `reasoning_content` (o-series, DeepSeek-R1,
    /// Claude with thinking, …; see [`crate::LanguageModel::supports_reasoning`]). Off by default:
    /// dspex does not guess it from the model name as LiteLLM's model map does.
    ///
    /// ```
    /// use dspex_lm::{LanguageModel, LM};
    ///
    /// let lm = LM::builder("openai/o3-mini")
    ///     .api_key("sk-test")
    ///     .native_reasoning(true)
    ///     .build()?;
    /// assert!(lm.supports_reasoning());
    /// # Ok::<(), dspex_lm::LmError>(())
    /// ```
    pub fn native_reasoning(mut self, on: bool) -> Self {
        self.reasoning = on;
        self
    }

    /// The base URL of an OpenAI-compatible server (`http://localhost:8000/v1`). Several base
    /// URLs of the same model separated by commas (`http://a:8000/v1,http://b:8000/v1`) make a
    /// fleet, as [`endpoints`](LmBuilder::endpoints) does; so does a comma-separated value of
    /// the provider's base variable (`DSPEX_API_BASE`, `OPENAI_API_BASE`, …).
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.api_base = Some(url.into());
        self
    }

    /// Several base URLs serving the same model (vLLM replicas, regional deployments), each of
    /// weight 1: one LM over all of them. Each call goes to one endpoint, picked by the power
    /// of two choices on outstanding requests per unit of weight; each endpoint has its own
    /// breaker (the [`breaker`](LmBuilder::breaker) setting) that ejects it after consecutive
    /// failures and re-admits it through a probe after the cool-down; a call that failed before
    /// any byte of its answer (connection refused or reset, 429/502/503/504, a streamed call
    /// timing out before its status line) is re-sent at once to another endpoint, without
    /// counting as an attempt of the retry policy. [`LM::endpoints`] reports each endpoint's
    /// load and counters; [`LM::endpoint`] returns the base URLs joined with commas.
    ///
    /// Added to the endpoints given before (with [`endpoint_weighted`](Self::endpoint_weighted));
    /// when any are given they replace [`api_base`](LmBuilder::api_base) and the environment's
    /// base URL. At most 64 endpoints.
    ///
    /// ```
    /// use dspex_lm::LM;
    ///
    /// let lm = LM::builder("hosted_vllm/llama")
    ///     .endpoints(["http://gpu-1:8000/v1", "http://gpu-2:8000/v1"])
    ///     .build()?;
    /// assert_eq!(lm.endpoint(), "http://gpu-1:8000/v1,http://gpu-2:8000/v1");
    /// # Ok::<(), dspex_lm::LmError>(())
    /// ```
    pub fn endpoints<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints
            .extend(urls.into_iter().map(|url| (url.into(), 1)));
        self
    }

    /// One more endpoint of the fleet (see [`endpoints`](LmBuilder::endpoints)) with `weight`:
    /// an endpoint of weight 2 is given about twice the outstanding requests of one of weight
    /// 1. A weight of 0 is a configuration error at [`build`](LmBuilder::build).
    pub fn endpoint_weighted(mut self, url: impl Into<String>, weight: u32) -> Self {
        self.endpoints.push((url.into(), weight));
        self
    }

    /// The API key (else the provider's environment variable).
    pub fn api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// An extra HTTP header sent with every request (its value never appears in `Debug`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Default sampling temperature.
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Default token limit.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }

    /// A default provider parameter (`top_p`, …) sent with every request.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Use the response cache (default true).
    pub fn cache(mut self, on: bool) -> Self {
        self.cache = on;
        self
    }

    /// The cache's tiers and location (default: memory, and disk under `DSPEX_CACHE_DIR` or
    /// `~/.dspex/cache`, created on first use).
    pub fn cache_config(mut self, config: CacheConfig) -> Self {
        self.cache_config = Some(config);
        self
    }

    /// Share an existing cache (several LMs, one cache).
    pub fn shared_cache(mut self, cache: ResponseCache) -> Self {
        self.shared_cache = Some(cache);
        self
    }

    /// The retry policy (default: 4 attempts, exponential backoff with full jitter).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Timeout of each attempt (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound on each whole call, retries included (default none).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Most calls in flight at once across clones (default unlimited).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// Request and token rates per minute.
    pub fn rate_limit(mut self, rate: RateLimit) -> Self {
        self.rate_limit = rate;
        self
    }

    /// Request and token rates shared through Redis by every process calling this endpoint with
    /// this API key (feature `redis`; see [`SharedRateLimit`](crate::SharedRateLimit)). Applies
    /// after the local [`rate_limit`](Self::rate_limit) and
    /// [`max_concurrency`](Self::max_concurrency); waits are counted in [`LM::limit_stats`].
    /// The limits are keyed by a hash of the endpoint URL(s) and of the API key, never the key
    /// itself.
    #[cfg(feature = "redis")]
    pub fn shared_rate_limit(mut self, limit: crate::distributed::SharedRateLimit) -> Self {
        self.shared_rate_limit = Some(limit);
        self
    }

    /// The endpoint's circuit breaker (default: opens after 5 consecutive failures for 10 s).
    /// LMs calling the same endpoint with the same breaker configuration share one breaker.
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// How many calls the history keeps (default 1,000; 0 keeps none).
    pub fn history_size(mut self, n: usize) -> Self {
        self.history_size = n;
        self
    }

    /// Prices for cost estimates. Without one, the LM takes the model's published price from
    /// dspex's table ([`Price::for_model`]); a model the table does not list has no cost
    /// (`None`), never a cost of 0.
    pub fn price(mut self, price: Price) -> Self {
        self.price = Some(price);
        self
    }

    /// Use this reqwest client for every request, whatever the base URL's scheme (to share a
    /// connection pool between LMs, or for a proxy or TLS setting of your own). Without it,
    /// plain `http://` endpoints get dspex's HTTP/1.1 client and `https://` ones a reqwest
    /// client of their own.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The largest response body accepted, in bytes (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`], 64 MiB): a longer answer — a misbehaving server, a proxy's
    /// error page that never ends — fails with [`LmError::ResponseTooLarge`] instead of filling
    /// memory. A streamed answer counts every byte of its event stream.
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// Builds the LM, resolving the provider, base URL and key (from the builder, else from the
    /// provider's environment variables: see the README's provider table).
    pub fn build(self) -> Result<LM, LmError> {
        self.build_in(&|name| std::env::var(name).ok())
    }

    /// [`build`](LmBuilder::build) with `lookup` as the environment.
    pub(crate) fn build_in(self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<LM, LmError> {
        let provider = provider::resolve(&self.model)?;
        let config = |message: String| LmError::Config {
            model: self.model.clone(),
            message,
        };
        let env = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| lookup(n).filter(|v| !v.trim().is_empty()))
        };
        // DSPy's rule for OpenAI's reasoning models (`dspy.LM._get_initial_kwargs`): temperature
        // 1.0 or unset, and a token limit of at least 16000 or unset.
        if provider::is_openai_reasoning_model(&self.model)
            && (self.temperature.is_some_and(|t| t != 0.0 && t != 1.0)
                || self.max_tokens.is_some_and(|m| m != 0 && m < 16_000))
        {
            return Err(config(format!(
                "OpenAI's reasoning models require passing temperature=1.0 or None and max_tokens >= 16000 or None, e.g. LM::builder(\"{}\").temperature(1.0).max_tokens(16000) (got temperature {:?}, max_tokens {:?})",
                self.model, self.temperature, self.max_tokens
            )));
        }
        let api_version = self.api_version.clone().or_else(|| {
            (provider.name == "azure")
                .then(|| env(&["AZURE_API_VERSION", "OPENAI_API_VERSION"]))
                .flatten()
        });
        let explicit_base = self.api_base.clone().or_else(|| env(provider.base_env));
        // The endpoints given, else the base URL (a comma-separated one is a fleet), else the
        // provider's public base.
        let given: Vec<(String, u32)> = if self.endpoints.is_empty() {
            match explicit_base
                .clone()
                .or_else(|| provider.default_base.clone())
            {
                Some(base) if base.contains(',') => base
                    .split(',')
                    .map(str::trim)
                    .filter(|b| !b.is_empty())
                    .map(|b| (b.to_string(), 1))
                    .collect(),
                Some(base) => vec![(base, 1)],
                None => Vec::new(),
            }
        } else {
            self.endpoints.clone()
        };
        if given.is_empty() {
            return Err(config(format!(
                "`{}` needs a base URL: call .api_base(\"http://host:port/v1\") or set {}",
                provider.name,
                provider.base_env.join(" or ")
            )));
        }
        if given.len() > fleet::MAX_ENDPOINTS {
            return Err(config(format!(
                "{} endpoints given: an LM takes at most {}",
                given.len(),
                fleet::MAX_ENDPOINTS
            )));
        }
        let mut bases = Vec::with_capacity(given.len());
        for (base, weight) in &given {
            let base = provider::normalize_base(&provider, base);
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return Err(config(format!(
                    "the base URL `{}` must start with http:// or https://",
                    provider::redact_url(&base)
                )));
            }
            if *weight == 0 {
                return Err(config(format!(
                    "the endpoint `{}` has weight 0: weights start at 1",
                    provider::redact_url(&base)
                )));
            }
            bases.push((base, *weight));
        }
        // Endpoints of the caller's own count as an explicit base: a self-hosted server needs no
        // key, as with `api_base`.
        let explicit_base =
            explicit_base.or_else(|| (!self.endpoints.is_empty()).then(String::new));
        let api_key = self
            .api_key
            .clone()
            .or_else(|| env(provider.key_env).map(ApiKey::new));
        if api_key.is_none() && provider.key_required && explicit_base.is_none() {
            return Err(config(format!(
                "no API key: set {} or call .api_key(...)",
                provider.key_env.join(" or ")
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config(format!("`{name}` is not a valid header name")))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| config(format!("the value of header `{name}` is not valid")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let cache = match (self.shared_cache, self.cache_config) {
            (Some(cache), _) => Some(cache),
            (None, Some(config)) => Some(ResponseCache::new(config)),
            (None, None) if self.cache => Some(ResponseCache::new(CacheConfig::default())),
            (None, None) => None,
        };
        let model_type = self.model_type.unwrap_or(provider.model_type);
        let mut provider = provider;
        if model_type == ModelType::Responses {
            if provider.protocol.name() != "openai" {
                return Err(config(format!(
                    "model_type Responses is OpenAI's Responses API: `{}` models speak the {} protocol",
                    provider.name,
                    provider.protocol.name()
                )));
            }
            provider.protocol = &crate::protocol::responses::Responses;
        }
        let protocol = provider.protocol;
        let paths = protocol.paths(crate::protocol::Target {
            model_id: &provider.model_id,
            model_type,
            max_tokens_key: provider.max_tokens_key,
            api_version: api_version.as_deref(),
        });
        for (name, value) in protocol.fixed_headers() {
            if !headers.contains_key(*name) {
                headers.insert(
                    reqwest::header::HeaderName::from_static(name),
                    reqwest::header::HeaderValue::from_static(value),
                );
            }
        }
        let auth = match &api_key {
            Some(key) => {
                let (name, value) = protocol.auth(key);
                let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    config("the API key contains characters not allowed in a header".to_string())
                })?;
                value.set_sensitive(true);
                Some((reqwest::header::HeaderName::from_static(name), value))
            }
            None => None,
        };
        let auth_ref = auth.as_ref().map(|(n, v)| (n, v));
        let mut members = Vec::with_capacity(bases.len());
        for (base, weight) in &bases {
            let endpoint = provider::redact_url(base);
            let url = |path: &str| {
                reqwest::Url::parse(&format!("{base}/{path}")).map_err(|e| {
                    config(format!("the base URL `{endpoint}` is not a valid URL: {e}"))
                })
            };
            let call = url(&paths.call)?;
            let http = match &self.http {
                Some(client) => Transport::Reqwest(client.clone()),
                None => Transport::for_base(&call)
                    .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?,
            };
            let urls = Urls {
                call: http.endpoint(call, &headers, auth_ref),
                stream: http.endpoint(url(&paths.stream)?, &headers, auth_ref),
                embeddings: match &paths.embeddings {
                    Some(path) => Some(http.endpoint(url(path)?, &headers, auth_ref)),
                    None => None,
                },
            };
            let breaker = breaker::for_endpoint(&endpoint, self.breaker);
            members.push(Arc::new(Member::new(
                endpoint, http, urls, breaker, *weight,
            )));
        }
        let fleet = Fleet { members };
        let endpoint = fleet.joined();
        // The caller's price, else the published one (`None` for an unlisted model).
        let price = self.price.or_else(|| Price::for_model(&self.model));
        let limiter = Limiter::new(self.max_concurrency, self.rate_limit);
        #[cfg(feature = "redis")]
        let limiter = match &self.shared_rate_limit {
            Some(limit) => limiter.with_shared(
                crate::distributed::SharedLimiter::new(
                    limit,
                    &endpoint,
                    api_key.as_ref().map(ApiKey::expose),
                )
                .map_err(config)?,
            ),
            None => limiter,
        };
        Ok(LM {
            shared: Arc::new(Shared {
                fleet,
                cache,
                limiter,
                history: History::new(self.history_size),
                totals: Mutex::new(UsageReport::default()),
                inflight: Mutex::new(HashMap::new()),
            }),
            settings: Arc::new(Settings {
                model: self.model,
                provider,
                model_type,
                reasoning: self.reasoning,
                api_version,
                endpoint,
                api_key,
                auth,
                headers,
                temperature: self.temperature,
                max_tokens: self.max_tokens,
                extra: self.extra,
                cache: self.cache,
                retry: self.retry,
                timeout: self.timeout,
                deadline: self.deadline,
                price,
                max_response_bytes: self.max_response_bytes,
            }),
        })
    }
}
