//! Streamed calls: the SSE exchange of [`LM::stream_with`], the state a stream reads with, what
//! it delivered (stored and recorded when it completes), and what it holds against the LM's
//! limits until it ends or is dropped.

use super::*;

impl LM {
    /// Streams a chat completion as it is generated, with the LM's policy
    /// ([`stream_with`](LM::stream_with) with default options).
    pub async fn stream(&self, request: LmRequest) -> Result<EventStream, LmError> {
        self.stream_with(request, &CallOptions::default()).await
    }

    /// Streams a chat completion as it is generated, with per-call overrides.
    ///
    /// - **Retries and limits.** Failures before the first byte (connection, status, breaker,
    ///   limits) are retried under the retry policy and come back as the outer error; a stream
    ///   that breaks off, stalls for longer than the per-attempt timeout, or sends a bad chunk
    ///   ends with an error item and is not retried (its text was already delivered).
    /// - **Cache.** With the cache on, a hit is streamed at once (one delta per completion, see
    ///   [`StreamEvent::from_response`]); a stream that completes (`data: [DONE]`, every
    ///   completion asked for) is stored under the same key as the equivalent
    ///   [`call_with`](LM::call_with), so streamed and plain calls share entries. Streams are
    ///   not coalesced with identical requests in flight.
    /// - **Accounting.** A completed stream (or a hit) is recorded like a call: usage totals,
    ///   usage trackers, history. A stream that fails or is dropped early records nothing.
    /// - **Text models** (`ModelType::Text`) are not streamed over SSE: the answer comes from a
    ///   plain call and is streamed at once.
    pub async fn stream_with(
        &self,
        request: LmRequest,
        options: &CallOptions,
    ) -> Result<EventStream, LmError> {
        // The span lasts as long as the stream (the stream holds it) and gets the response's
        // attributes when it completes, or the error that ended it.
        let span = self.call_span("lm.stream", &request);
        let start = Instant::now();
        let opened = self
            .open_stream(request, options, &span)
            .instrument(span.clone())
            .await;
        if let Err(error) = &opened {
            record_error(&span, error);
            #[cfg(feature = "otel")]
            self.record_metrics(&Err(error.clone()), false, start);
        }
        #[cfg(not(feature = "otel"))]
        let _ = start;
        opened
    }

    /// Everything of [`stream_with`](LM::stream_with) up to the first byte of the answer.
    async fn open_stream(
        &self,
        request: LmRequest,
        options: &CallOptions,
        span: &tracing::Span,
    ) -> Result<EventStream, LmError> {
        let start = Instant::now();
        let mut request = request;
        self.merge_defaults(&mut request);
        let s = &self.settings;
        let cache = match (&self.shared.cache, options.cache.unwrap_or(s.cache)) {
            (Some(cache), true) => Some(cache.clone()),
            _ => None,
        };
        if s.model_type == ModelType::Text {
            let response = self.call_with(request, options).await?;
            return Ok(StreamEvent::stream_of(&response));
        }
        let key = CacheKey::for_request(&s.model, self.kind(), &request);
        if let Some(cache) = &cache
            && let Some(hit) = cache.get(&key).await
        {
            tracing::debug!(model = %s.model, "LM stream answered from the cache");
            let events = StreamEvent::stream_of(&hit);
            record_response(span, &hit);
            #[cfg(feature = "otel")]
            self.record_metrics(&Ok(hit.clone()), true, start);
            self.record(request, &hit, None);
            return Ok(events);
        }
        let body = s
            .provider
            .protocol
            .body(self.target(), &request, true)
            .map_err(|feature| protocol::unsupported(&s.model, feature))?;
        let body = Bytes::from(body);
        let (response, slot, served) = self
            .retrying(options, start, |timeout, deadline| {
                self.admitted(
                    estimate_tokens(&request),
                    timeout,
                    deadline,
                    true,
                    |index| {
                        self.record_request();
                        let member = self.shared.fleet.member(index);
                        let body = body.clone();
                        async move {
                            self.post(member, &member.urls.stream, body)
                                .await
                                .map_err(Failed::early)
                        }
                    },
                )
            })
            .await?;
        self.record_served_by(served.index);
        let served_index = served.index;
        let member = Arc::clone(self.shared.fleet.member(served.index));
        let lm = self.clone();
        let idle = options.timeout.unwrap_or(s.timeout);
        let charge = StreamCharge {
            slot: Some(slot),
            served: Some(served),
            prompt_tokens: prompt_tokens(&request),
            delivered_chars: 0,
            reported: None,
            lm: lm.clone(),
        };
        let state = StreamState {
            bytes: response.into_stream(s.max_response_bytes),
            decoder: SseDecoder::default(),
            reader: s.provider.protocol.stream(self.target()),
            pending: std::collections::VecDeque::new(),
            done: false,
            charge,
            lm,
            member,
            idle,
            completed: Some(Completed {
                request,
                key,
                cache,
                start,
                served: served_index,
                choices: Vec::new(),
                usage: Usage::default(),
                span: span.clone(),
            }),
        };
        Ok(
            Box::pin(futures_util::stream::unfold(state, |mut st| async move {
                loop {
                    if let Some(event) = st.pending.pop_front() {
                        if let Ok(event) = &event {
                            st.charge.observe(event);
                        }
                        if let Some(completed) = &mut st.completed {
                            match &event {
                                Ok(event) => completed.observe(event),
                                // A failed stream is neither stored nor recorded (but its
                                // span and the metrics say how it ended).
                                Err(error) => {
                                    record_error(&completed.span, error);
                                    #[cfg(feature = "otel")]
                                    st.lm.record_metrics(
                                        &Err(error.clone()),
                                        completed.cache.is_some(),
                                        completed.start,
                                    );
                                    st.completed = None;
                                }
                            }
                        }
                        if st.done && st.pending.is_empty() && st.completed.is_none() {
                            // The last item of a failed stream: the slot goes back now, not
                            // when the caller gets round to dropping the stream.
                            st.charge.settle();
                        }
                        return Some((event, st));
                    }
                    if st.done {
                        st.charge.settle();
                        if let Some(completed) = st.completed.take() {
                            completed.finish(&st.lm).await;
                        }
                        return None;
                    }
                    st.read().await;
                }
            })) as EventStream,
        )
    }
}

struct StreamState {
    bytes: ByteStream,
    decoder: SseDecoder,
    /// The protocol's reader of the stream's events.
    reader: Box<dyn StreamReader>,
    pending: std::collections::VecDeque<Result<StreamEvent, LmError>>,
    done: bool,
    /// The concurrency slot and token budget the stream holds until it ends or is dropped.
    charge: StreamCharge,
    lm: LM,
    /// The endpoint answering, which the stream's errors name.
    member: Arc<Member>,
    idle: Duration,
    /// What the stream delivered so far, to store and record once it completes (`None` once it
    /// failed).
    completed: Option<Completed>,
}

impl StreamState {
    /// Reads the next bytes and queues the events they complete (or the error that ends the
    /// stream).
    async fn read(&mut self) {
        let lm = &self.lm;
        let s = &lm.settings;
        let member = &*self.member;
        match tokio::time::timeout(self.idle, self.bytes.next()).await {
            Err(_) => {
                self.done = true;
                self.pending.push_back(Err(LmError::Timeout {
                    model: s.model.clone(),
                    endpoint: member.endpoint.clone(),
                    timeout: self.idle,
                }));
            }
            Ok(None) => {
                self.done = true;
                if !self.reader.complete_at_eof() {
                    self.pending.push_back(Err(LmError::Connect {
                        model: s.model.clone(),
                        endpoint: member.endpoint.clone(),
                        message: format!("the stream ended before {}", self.reader.end_marker()),
                    }));
                }
            }
            Ok(Some(Err(e))) => {
                self.done = true;
                self.pending.push_back(Err(lm.transport_error(member, &e)));
            }
            Ok(Some(Ok(bytes))) => {
                for data in self.decoder.feed(&bytes) {
                    let text = match data {
                        SseData::Done => "[DONE]".to_string(),
                        SseData::Json(text) => text,
                    };
                    match self.reader.read(&text) {
                        Ok(Chunk::Events(events)) => {
                            self.pending.extend(events.into_iter().map(Ok));
                        }
                        Ok(Chunk::End(events)) => {
                            self.pending.extend(events.into_iter().map(Ok));
                            self.done = true;
                            break;
                        }
                        Ok(Chunk::Failed { status, failure }) => {
                            self.done = true;
                            self.pending
                                .push_back(Err(lm.provider_error(member, status, failure, None)));
                            break;
                        }
                        Err(message) => {
                            self.done = true;
                            self.pending.push_back(Err(LmError::Decode {
                                model: s.model.clone(),
                                endpoint: member.endpoint.clone(),
                                message: format!("invalid stream chunk: {message}"),
                                raw: excerpt(&text, 500),
                            }));
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// A streamed response being put together, to be cached and recorded when it completes.
struct Completed {
    request: LmRequest,
    key: CacheKey,
    cache: Option<ResponseCache>,
    start: Instant,
    /// The endpoint answering.
    served: usize,
    choices: Vec<Choice>,
    usage: Usage,
    /// The call's `lm.stream` span, open until the stream ends or is dropped.
    span: tracing::Span,
}

impl Completed {
    fn observe(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Usage(usage) => self.usage = *usage,
            StreamEvent::Delta { index, .. }
            | StreamEvent::Finish { index, .. }
            | StreamEvent::Reasoning { index, .. }
            | StreamEvent::ToolCall { index, .. } => {
                if let Some(choice) = self.choice(*index) {
                    choice.absorb(event);
                }
            }
        }
    }

    /// Completion `index`, unless nobody asked for it (a server cannot make us allocate for
    /// indexes beyond `n`).
    fn choice(&mut self, index: u32) -> Option<&mut Choice> {
        let index = index as usize;
        if index >= self.wanted() {
            return None;
        }
        if self.choices.len() <= index {
            self.choices.resize_with(index + 1, Choice::empty);
        }
        self.choices.get_mut(index)
    }

    /// How many completions were asked for.
    fn wanted(&self) -> usize {
        self.request.n.unwrap_or(1).max(1) as usize
    }

    /// Stores the whole response (when every completion asked for arrived) and records it.
    async fn finish(self, lm: &LM) {
        let wanted = self.wanted();
        let response = LmResponse {
            choices: self.choices,
            usage: self.usage,
            model: lm.settings.provider.model_id.clone(),
            latency: self.start.elapsed(),
            cache_hit: false,
        };
        record_response(&self.span, &response);
        #[cfg(feature = "otel")]
        lm.record_metrics(&Ok(response.clone()), self.cache.is_some(), self.start);
        if let Some(cache) = &self.cache
            && response.choices.len() >= wanted
        {
            cache.put(self.key, &response).await;
        }
        lm.record(self.request, &response, Some(self.served));
    }
}

/// What a streamed call holds against the LM's limits: its concurrency slot, until the stream
/// ends or is dropped, and its token reservation, settled then with the usage the server
/// reported (`stream_options.include_usage`) or, when it reported none (a server that ignores
/// the option, a stream dropped or broken before its usage chunk), an estimate: the prompt's
/// characters / 4 plus the delivered text's characters / 4.
struct StreamCharge {
    slot: Option<Slot>,
    /// The endpoint's lease: the stream is outstanding on it until it ends or is dropped.
    served: Option<ServedBy>,
    prompt_tokens: u64,
    delivered_chars: usize,
    reported: Option<Usage>,
    lm: LM,
}

impl StreamCharge {
    fn observe(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Delta { text, .. } | StreamEvent::Reasoning { text, .. } => {
                self.delivered_chars += text.len();
            }
            StreamEvent::ToolCall { arguments, .. } => self.delivered_chars += arguments.len(),
            StreamEvent::Usage(usage) if usage.total_tokens > 0 => self.reported = Some(*usage),
            _ => {}
        }
    }

    /// The tokens the stream is charged.
    fn tokens(&self) -> u64 {
        match self.reported {
            Some(usage) => usage.total_tokens,
            None => self.prompt_tokens + self.delivered_chars.div_ceil(4) as u64,
        }
    }

    /// Settles the token budget and frees the concurrency slot (once).
    fn settle(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.lm.shared.limiter.settle(&slot, self.tokens());
        }
        self.served = None;
    }
}

impl Drop for StreamCharge {
    fn drop(&mut self) {
        self.settle();
    }
}
