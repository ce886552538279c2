//! Optimizations as jobs: start one and get a [`Job`] handle at once; it reports progress, can be
//! cancelled (the optimizer then returns the best program found so far, or
//! [`Error::Cancelled`] when it had scored none), and logs every trial to a JSONL file for
//! plotting.
//!
//! Cancellation is a [`CancelToken`]: optimizers race the work in flight at every stage —
//! teacher runs, proposals, evaluations — against it, so a cancel takes effect within about one
//! LM call, and the work dropped at that point releases what it held.

use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use crate::lm::{UsageReport, UsageTracker};
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Where an optimization is: its phase, trials done, and the best score so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Progress {
    /// What the optimizer is doing (`bootstrapping`, `proposing instructions`, `searching`, …).
    pub phase: String,
    /// Trials finished so far.
    pub trials: usize,
    /// Trials planned, when the optimizer knows.
    pub total_trials: Option<usize>,
    /// The best score seen so far.
    pub best_score: Option<f64>,
    /// Whether the job has ended (finished, failed or cancelled).
    pub done: bool,
}

/// One evaluated candidate, as logged (one JSON object per line) and reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialEvent {
    /// The trial's number, from 0.
    pub trial: usize,
    /// Its score.
    pub score: f64,
    /// Whether it was scored on a minibatch rather than the whole validation set.
    pub minibatch: bool,
    /// What was tried (the optimizer's own description: demo set, instruction index, …).
    pub candidate: Map<String, Value>,
}

/// What an optimizer reports through and checks: cancellation, phase, trials. A context made
/// with [`JobContext::detached`] (what a plain `compile` uses) reports nowhere and is never
/// cancelled.
///
/// An optimizer checks [`is_cancelled`](Self::is_cancelled) before it starts new work and races
/// the work in flight against [`cancelled`](Self::cancelled) (or runs it through
/// [`run_until_cancelled`](Self::run_until_cancelled)); an [`Evaluate`](crate::evaluate::Evaluate)
/// stops with it through [`cancel_token`](Self::cancel_token).
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    cancel: CancelToken,
    progress: watch::Sender<Progress>,
    log: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    log_path: Option<PathBuf>,
    started: Instant,
    usage: UsageTracker,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("progress", &*self.inner.progress.borrow())
            .field("cancelled", &self.is_cancelled())
            .field("log", &self.inner.log_path)
            .finish()
    }
}

impl JobContext {
    /// A context that reports nowhere and is never cancelled.
    pub fn detached() -> Self {
        Self::new(None)
    }

    fn new(log: Option<(PathBuf, std::fs::File)>) -> Self {
        Self::with_token(log, CancelToken::new())
    }

    fn with_token(log: Option<(PathBuf, std::fs::File)>, cancel: CancelToken) -> Self {
        let (progress, _) = watch::channel(Progress::default());
        let (log_path, file) = match log {
            Some((path, file)) => (Some(path), Some(std::io::BufWriter::new(file))),
            None => (None, None),
        };
        JobContext {
            inner: Arc::new(Inner {
                cancel,
                progress,
                log: Mutex::new(file),
                log_path,
                started: Instant::now(),
                usage: UsageTracker::new(),
            }),
        }
    }

    /// Whether the job was asked to stop. Optimizers check it before starting new work and
    /// return the best program found so far.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Resolves once the job is asked to stop (at once if it was); never for a detached
    /// context. Race work in flight against it.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.cancel.cancelled()
    }

    /// Runs `fut` until it finishes (`Some(output)`) or the job is asked to stop (`None`; `fut`
    /// is dropped where it stands, and is never polled if the job was already cancelled).
    pub async fn run_until_cancelled<F: Future>(&self, fut: F) -> Option<F::Output> {
        self.inner.cancel.run_until_cancelled(fut).await
    }

    /// The job's cancellation token, to hand to work that stops on its own, such as
    /// [`Evaluate::cancel_on`](crate::evaluate::Evaluate::cancel_on).
    pub fn cancel_token(&self) -> CancelToken {
        self.inner.cancel.clone()
    }

    /// A context for an inner optimization (the BootstrapFewShot runs of a search): cancelled
    /// with this one, but reporting nowhere, since its trials are not this job's.
    pub(crate) fn muted(&self) -> JobContext {
        Self::with_token(None, self.inner.cancel.clone())
    }

    /// [`Error::Cancelled`] in the current phase: what a job cancelled before it scored any
    /// program returns.
    pub(crate) fn cancelled_error(&self) -> Error {
        Error::Cancelled {
            phase: self.inner.progress.borrow().phase.clone(),
        }
    }

    /// Enters a phase, with the number of trials it plans if known.
    pub fn phase(&self, phase: impl Into<String>, total_trials: Option<usize>) {
        let phase = phase.into();
        tracing::info!(phase = %phase, "optimizer phase");
        self.inner.progress.send_modify(|p| {
            p.phase = phase;
            p.total_trials = total_trials;
        });
    }

    /// Records a finished trial: updates the progress and the best score, and appends the
    /// event (with `elapsed_ms`, the phase and the usage so far) to the log, if there is one.
    pub fn trial(&self, event: TrialEvent) {
        self.record_trial(event, None);
    }

    /// [`trial`](Self::trial) for a full evaluation, with the score of each validation example
    /// (in order), which the report's before/after table reads.
    pub fn trial_with_example_scores(&self, event: TrialEvent, example_scores: &[f64]) {
        self.record_trial(event, Some(example_scores));
    }

    fn record_trial(&self, event: TrialEvent, example_scores: Option<&[f64]>) {
        let mut phase = String::new();
        self.inner.progress.send_modify(|p| {
            p.trials += 1;
            if !event.minibatch && event.score.is_finite() {
                p.best_score = Some(p.best_score.map_or(event.score, |b| b.max(event.score)));
            }
            phase.clone_from(&p.phase);
        });
        let mut line = match serde_json::to_value(&event) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        line.insert("phase".into(), Value::String(phase));
        if let Some(scores) = example_scores {
            line.insert("example_scores".into(), scores.into());
        }
        self.log_event("trial", line);
    }

    /// Appends one line `{"event": kind, …fields, "elapsed_ms", "usage"}` to the log, if there
    /// is one. A write that fails turns the log off with a warning; the job goes on.
    pub(crate) fn log_event(&self, kind: &str, fields: Map<String, Value>) {
        let mut log = self.inner.log.lock().unwrap_or_else(|e| e.into_inner());
        let Some(file) = log.as_mut() else {
            return;
        };
        let mut line = Map::with_capacity(fields.len() + 3);
        line.insert("event".into(), kind.into());
        line.extend(fields);
        line.insert(
            "elapsed_ms".into(),
            Value::from(self.inner.started.elapsed().as_millis() as u64),
        );
        line.insert("usage".into(), usage_json(&self.inner.usage.report()));
        let written = serde_json::to_writer(&mut *file, &line)
            .map_err(std::io::Error::other)
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.flush());
        if let Err(e) = written {
            tracing::warn!(error = %e, path = ?self.inner.log_path, "cannot write the trial log; trials go on unlogged");
            *log = None;
        }
    }

    /// The LM usage of the job's calls so far (every LM call made inside the job's task and
    /// the work it spawns).
    pub fn usage(&self) -> UsageReport {
        self.inner.usage.report()
    }

    /// Where the log is written, if anywhere.
    pub fn log_path(&self) -> Option<&Path> {
        self.inner.log_path.as_deref()
    }

    /// The progress so far.
    pub fn progress(&self) -> Progress {
        self.inner.progress.borrow().clone()
    }

    fn finish(&self) {
        self.inner.progress.send_modify(|p| p.done = true);
    }
}

/// A usage report as the log writes it: the totals over every model.
fn usage_json(report: &UsageReport) -> Value {
    let total = report.total();
    serde_json::json!({
        "lm_calls": total.calls,
        "requests": total.requests,
        "cache_hits": total.cache_hits,
        "prompt_tokens": total.usage.prompt_tokens,
        "completion_tokens": total.usage.completion_tokens,
        "total_tokens": total.usage.total_tokens,
        "cost_usd": total.cost_usd,
    })
}

/// A running optimization. Dropping the handle does not stop it; [`Job::cancel`] does.
///
/// **The log** (one JSON object per line, each with an `event`):
/// - `start` — the optimizer's name and the student's saved state (written by
///   [`Optimizer::spawn`](super::Optimizer::spawn));
/// - `trial` — a [`TrialEvent`]'s fields, the `phase`, `elapsed_ms`, the LM `usage` of the job
///   so far (`lm_calls`, `requests`, `cache_hits`, `prompt_tokens`, `completion_tokens`,
///   `total_tokens`, `cost_usd`), and for full evaluations that kept them, `example_scores`
///   (one per validation example, in order);
/// - `end` — the compiled program's saved state, the best score, the final usage.
///
/// Optimizers add their own keys to a trial's `candidate`; GEPA's `index`, `parents` and
/// `val_scores` give the report its lineage tree and Pareto front.
/// [`write_report`](super::write_report) turns a log into one HTML page.
///
/// The job runs with the task-scoped context of the code that started it: the
/// [settings](crate::settings) of an enclosing `with_settings` (LM, adapter, call defaults,
/// trace) and the usage trackers of an enclosing `track_usage`.
pub struct Job<P> {
    ctx: JobContext,
    progress: watch::Receiver<Progress>,
    task: JoinHandle<Result<P>>,
}

impl<P> std::fmt::Debug for Job<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("ctx", &self.ctx).finish()
    }
}

impl<P: Send + 'static> Job<P> {
    /// Starts `optimize` on the current tokio runtime and returns at once. With `log`, every
    /// trial is appended to that file as one JSON line (the file is created or truncated now).
    ///
    /// The optimization runs as its own task, inside the task-scoped settings and usage trackers
    /// in effect here (see [`crate::settings::in_current_scope`]) and the current tracing span.
    pub fn spawn<F, Fut>(log: Option<&Path>, optimize: F) -> Result<Job<P>>
    where
        F: FnOnce(JobContext) -> Fut,
        Fut: Future<Output = Result<P>> + Send + 'static,
    {
        let file = match log {
            Some(path) => Some((
                path.to_path_buf(),
                std::fs::File::create(path).map_err(|e| {
                    Error::step(format!("creating the trial log {}", path.display()), e)
                })?,
            )),
            None => None,
        };
        let ctx = JobContext::new(file);
        let progress = ctx.inner.progress.subscribe();
        let fut = optimize(ctx.clone());
        let done = Finish(ctx.clone());
        let usage = ctx.inner.usage.clone();
        let run = crate::settings::in_current_scope(async move {
            let out = usage.scope(fut).await;
            drop(done);
            out
        });
        let task = tokio::spawn(run.instrument(tracing::Span::current()));
        Ok(Job {
            ctx,
            progress,
            task,
        })
    }

    /// The progress now.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits until the progress changes (a trial ends, a phase starts, the job ends) and
    /// returns it; `None` once the job has ended and nothing more will change.
    pub async fn next_progress(&mut self) -> Option<Progress> {
        if self.progress.borrow().done {
            return None;
        }
        self.progress.changed().await.ok()?;
        Some(self.progress.borrow_and_update().clone())
    }

    /// The LM usage of the job so far.
    pub fn usage(&self) -> UsageReport {
        self.ctx.usage()
    }

    /// Writes the [report](super::write_report) of the job's log so far to `path`: one
    /// self-contained HTML page. Works while the job runs and after it ended.
    ///
    /// # Errors
    ///
    /// When the job has no log, or the log cannot be read or the page written.
    pub fn report(&self, path: impl AsRef<Path>) -> Result<()> {
        let log = self.ctx.log_path().ok_or_else(|| {
            Error::step(
                "writing the optimization report",
                "the job has no log: spawn it with a log path",
            )
        })?;
        super::write_report(log, path.as_ref())
    }

    /// Asks the optimizer to stop. The work in flight is dropped (or, at worst, the LM calls
    /// already sent finish); [`Job::wait`] then returns the best program found so far, or
    /// [`Error::Cancelled`] if the job had not scored any program yet.
    pub fn cancel(&self) {
        self.ctx.inner.cancel.cancel();
    }

    /// Waits for the result.
    pub async fn wait(self) -> Result<P> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::step("the optimization task", e)),
        }
    }
}

/// Marks the job's progress done when the optimization ends, however it ends (a panic
/// included), so that [`Job::next_progress`] never waits for a job that is gone.
struct Finish(JobContext);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn event(trial: usize, score: f64) -> TrialEvent {
        TrialEvent {
            trial,
            score,
            minibatch: false,
            candidate: json!({"demo_set": trial}).as_object().unwrap().clone(),
        }
    }

    #[tokio::test]
    async fn progress_log_and_cancellation() {
        let dir = std::env::temp_dir().join(format!("dspex-job-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("trials.jsonl");
        let mut job = Job::spawn(Some(&log), |ctx: JobContext| async move {
            ctx.phase("searching", Some(1000));
            let mut best = 0usize;
            for trial in 0..1000 {
                if ctx.is_cancelled() {
                    break;
                }
                ctx.trial(event(trial, trial as f64 / 10.0));
                best = trial;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(best)
        })
        .unwrap();
        let mut seen = Vec::new();
        while let Some(p) = job.next_progress().await {
            seen.push(p.clone());
            if p.trials >= 3 {
                job.cancel();
            }
        }
        let best = job.wait().await.unwrap();
        assert!((2..20).contains(&best), "stopped early: {best}");
        assert!(seen.iter().any(|p| p.phase == "searching"));
        let last = seen.last().unwrap();
        assert!(last.done);
        assert_eq!(last.best_score, Some(best as f64 / 10.0));
        let lines: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), best + 1);
        assert_eq!(lines[1]["trial"], 1);
        assert_eq!(lines[1]["phase"], "searching");
        assert_eq!(lines[1]["candidate"], json!({"demo_set": 1}));
        assert!(lines[1]["elapsed_ms"].is_u64());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_is_a_future_and_reaches_muted_contexts() {
        let job = Job::spawn(None, |ctx: JobContext| async move {
            ctx.phase("waiting", None);
            let inner = ctx.muted();
            inner.phase("inner", None);
            // Never finishes on its own: only the cancellation ends it.
            let raced = inner
                .run_until_cancelled(tokio::time::sleep(Duration::from_secs(3600)))
                .await;
            assert!(raced.is_none() && inner.is_cancelled());
            Err::<(), _>(ctx.cancelled_error())
        })
        .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            job.progress().phase,
            "waiting",
            "a muted context reports nowhere"
        );
        job.cancel();
        let err = tokio::time::timeout(Duration::from_secs(1), job.wait())
            .await
            .expect("the job ends at once")
            .unwrap_err();
        assert!(
            matches!(&err, Error::Cancelled { phase } if phase == "waiting"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "the optimization was cancelled while waiting, before any program was scored"
        );
        assert!(!JobContext::detached().is_cancelled());
    }

    #[tokio::test]
    async fn a_panicking_job_still_ends_its_progress() {
        let mut job: Job<()> = Job::spawn(None, |ctx: JobContext| async move {
            ctx.phase("about to fail", None);
            tokio::task::yield_now().await;
            panic!("the optimizer panicked")
        })
        .unwrap();
        while job.next_progress().await.is_some() {}
        assert!(job.progress().done);
        let err = job.wait().await.unwrap_err();
        assert!(err.to_string().contains("the optimization task"), "{err}");
    }

    #[tokio::test]
    async fn failures_come_back_from_wait() {
        let job: Job<()> = Job::spawn(None, |_ctx| async { Err(Error::NoLm) }).unwrap();
        assert!(matches!(job.wait().await, Err(Error::NoLm)));
        let err = Job::<()>::spawn(Some(Path::new("/nonexistent/dir/log.jsonl")), |_| async {
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("creating the trial log"), "{err}");
    }
}
