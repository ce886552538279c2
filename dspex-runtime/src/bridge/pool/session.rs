//! [`Session`]: calls kept on one worker (affinity), and the objects created through it.

use super::*;

pub(super) struct SessionInner {
    pub(super) pool: Pool,
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) mode: AffinityMode,
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        lock(&self.pool.shared.state).sessions.remove(&self.id);
    }
}

/// A group of calls that share the objects they create: they run on one worker, as the
/// [`AffinityMode`] says. Cheap to clone: clones are the same session. Dropping the last clone
/// forgets the binding (the objects stay in the worker until dropped with [`Op::Drop`]).
#[derive(Clone)]
pub struct Session {
    pub(super) inner: Arc<SessionInner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.mode)
            .field("worker", &self.worker())
            .finish()
    }
}

impl Session {
    /// The session's name on the wire (`s1`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its affinity mode.
    pub fn mode(&self) -> AffinityMode {
        self.inner.mode
    }

    /// The pool it belongs to.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The worker holding its objects, once its first call ran.
    pub fn worker(&self) -> Option<WorkerRef> {
        lock(&self.inner.pool.shared.state)
            .sessions
            .get(&self.inner.id)
            .and_then(|s| s.worker)
    }

    /// Whether its worker died (strict modes): every call now fails with
    /// [`BridgeError::SessionLost`].
    pub fn is_lost(&self) -> bool {
        lock(&self.inner.pool.shared.state)
            .sessions
            .get(&self.inner.id)
            .is_some_and(|s| s.lost.is_some())
    }

    /// Runs `op` on the session's worker. A `create` without a session gets this one's.
    pub async fn request(&self, op: Op) -> Result<Value, BridgeError> {
        self.request_with(op, RequestOptions::default()).await
    }

    /// [`request`](Self::request) with options.
    pub async fn request_with(
        &self,
        op: Op,
        options: RequestOptions,
    ) -> Result<Value, BridgeError> {
        Ok(self.run(op, &options).await?.0)
    }

    pub(crate) async fn run(
        &self,
        mut op: Op,
        options: &RequestOptions,
    ) -> Result<(Value, WorkerRef), BridgeError> {
        if let Op::Create { session, .. } = &mut op
            && session.is_none()
        {
            *session = Some(self.inner.name.clone());
        }
        self.inner
            .pool
            .shared
            .run(&op, Some((self.inner.id, self.inner.mode)), options)
            .await
    }

    /// Creates a DSPy module (`dspy.<module>(signature, **kwargs)`) in this session; its object
    /// id. A [`DynSignature`](crate::signature::DynSignature) brings its instructions
    /// ([`SignatureArg::instructions`]) and its field descriptions and prefixes
    /// ([`SignatureArg::fields`]); a string, DSPy's defaults.
    pub async fn create(
        &self,
        module: impl Into<String>,
        signature: impl Into<SignatureArg>,
        kwargs: Map<String, Value>,
    ) -> Result<String, BridgeError> {
        let signature = signature.into();
        let op = Op::Create {
            module: module.into(),
            signature: signature.text(),
            instructions: signature.instructions(),
            fields: signature.fields(),
            kwargs,
            session: None,
        };
        let (value, worker) = self.run(op, &RequestOptions::default()).await?;
        Ok(decode::<CreateResult>(worker, "create", value)?.object)
    }

    /// Calls `object` with `inputs`; the prediction's fields.
    pub async fn call(
        &self,
        object: impl Into<String>,
        inputs: Map<String, Value>,
    ) -> Result<Map<String, Value>, BridgeError> {
        let op = Op::Call {
            object: object.into(),
            inputs,
        };
        let (value, worker) = self.run(op, &RequestOptions::default()).await?;
        Ok(decode::<crate::bridge::protocol::CallResult>(worker, "call", value)?.outputs)
    }
}
