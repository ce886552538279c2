//! Optimizations as jobs: start one and get a [`Job`] handle at once; it reports progress, can be
//! cancelled (the optimizer then returns the best program found so far), and logs every trial
//! to a JSONL file for plotting.

use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    cancelled: AtomicBool,
    progress: watch::Sender<Progress>,
    log: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    log_path: Option<PathBuf>,
    started: Instant,
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
        let (progress, _) = watch::channel(Progress::default());
        let (log_path, file) = match log {
            Some((path, file)) => (Some(path), Some(std::io::BufWriter::new(file))),
            None => (None, None),
        };
        JobContext {
            inner: Arc::new(Inner {
                cancelled: AtomicBool::new(false),
                progress,
                log: Mutex::new(file),
                log_path,
                started: Instant::now(),
            }),
        }
    }

    /// Whether the job was asked to stop. Optimizers check it between trials and return the
    /// best program found so far.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Relaxed)
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
    /// event (with `elapsed_ms` and the phase) to the log, if there is one.
    pub fn trial(&self, event: TrialEvent) {
        let mut phase = String::new();
        self.inner.progress.send_modify(|p| {
            p.trials += 1;
            if !event.minibatch && event.score.is_finite() {
                p.best_score = Some(p.best_score.map_or(event.score, |b| b.max(event.score)));
            }
            phase.clone_from(&p.phase);
        });
        let mut log = self.inner.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = log.as_mut() {
            let mut line = match serde_json::to_value(&event) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            line.insert("phase".into(), Value::String(phase));
            line.insert(
                "elapsed_ms".into(),
                Value::from(self.inner.started.elapsed().as_millis() as u64),
            );
            let written = serde_json::to_writer(&mut *file, &line)
                .map_err(std::io::Error::other)
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.flush());
            if let Err(e) = written {
                tracing::warn!(error = %e, path = ?self.inner.log_path, "cannot write the trial log; trials go on unlogged");
                *log = None;
            }
        }
    }

    /// The progress so far.
    pub fn progress(&self) -> Progress {
        self.inner.progress.borrow().clone()
    }

    fn finish(&self) {
        self.inner.progress.send_modify(|p| p.done = true);
    }
}

/// A running optimization. Dropping the handle does not stop it; [`Job::cancel`] does.
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
    /// The optimization runs as its own task, so task-scoped settings (`with_settings`) do not
    /// reach it: give the programs their LM through their `CallConfig`, or `configure` the
    /// process.
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
        let done = ctx.clone();
        let task = tokio::spawn(async move {
            let out = fut.await;
            done.finish();
            out
        });
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

    /// Asks the optimizer to stop; [`Job::wait`] then returns the best program found so far.
    pub fn cancel(&self) {
        self.ctx.inner.cancelled.store(true, Ordering::Relaxed);
    }

    /// Waits for the result.
    pub async fn wait(self) -> Result<P> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::step("the optimization task", e)),
        }
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
