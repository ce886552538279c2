//! The pool's end of a worker's stdin: frames go out whole and in order, written by the task
//! that sends them when the pipe has room, else by a flusher task.
//!
//! Writing in the sending task saves a hand-off per request: with a writer task behind a
//! channel, every frame wakes that task first — on a multi-threaded runtime usually another
//! thread, which costs tens of microseconds on a small VM, a large part of a ping's round trip.
//! A frame that does not fit at once (the worker is not reading, or the frame is larger than
//! the pipe's room) is queued with the bytes already written counted, and every later frame
//! queues behind it, so frames never interleave and a sender never waits: the flusher waits
//! for room instead. A caller that gives up therefore never leaves half a frame behind.
//!
//! Senders write through a duplicate of the pipe's descriptor (same open file, non-blocking):
//! tokio's `try_write` refuses to try before its reactor has reported the pipe writable, which
//! would send the first frames to the flusher for nothing. The flusher writes with tokio's
//! `try_write`, so that a full pipe clears tokio's readiness and `writable()` waits for room.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::unix::pipe;
use tokio::sync::Notify;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A worker's stdin, shared by the tasks that send frames and the flusher.
pub(crate) struct FrameWriter {
    inner: Mutex<Inner>,
    wake: Notify,
}

/// The pipe, registered with tokio (for the flusher), and a duplicate of its descriptor (for
/// senders). Both must be dropped for the worker to read end of file.
struct Pipe {
    tokio: Arc<pipe::Sender>,
    direct: File,
}

struct Inner {
    /// The pipe; `None` once it is closed (asked to, or broken).
    pipe: Option<Pipe>,
    /// Frames waiting for room; the front one is partly written (`offset` bytes).
    queue: VecDeque<Vec<u8>>,
    offset: usize,
    /// Close once the queue is written.
    closing: bool,
}

/// What one attempt to write the front of the queue (or a new frame) came to.
enum Wrote {
    /// Every byte.
    All,
    /// This many bytes; the pipe is full.
    Part(usize),
    /// The pipe broke (the worker is gone).
    Broken,
}

fn write_some(mut write: impl FnMut(&[u8]) -> std::io::Result<usize>, bytes: &[u8]) -> Wrote {
    let mut written = 0;
    while written < bytes.len() {
        match write(&bytes[written..]) {
            // A pipe writes nothing only when full.
            Ok(0) => return Wrote::Part(written),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Wrote::Part(written),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Wrote::Broken,
        }
    }
    Wrote::All
}

impl FrameWriter {
    /// Takes over `pipe` and starts its flusher task (on the current runtime). Fails when the
    /// descriptor cannot be duplicated.
    pub(crate) fn start(pipe: pipe::Sender) -> std::io::Result<Arc<FrameWriter>> {
        let direct = File::from(pipe.as_fd().try_clone_to_owned()?);
        let writer = Arc::new(FrameWriter {
            inner: Mutex::new(Inner {
                pipe: Some(Pipe {
                    tokio: Arc::new(pipe),
                    direct,
                }),
                queue: VecDeque::new(),
                offset: 0,
                closing: false,
            }),
            wake: Notify::new(),
        });
        tokio::spawn(flush(writer.clone()));
        Ok(writer)
    }

    /// Sends one encoded frame: written now if nothing is queued and the pipe has room, else
    /// queued for the flusher. False once the pipe is closed or broken.
    pub(crate) fn send(&self, frame: Vec<u8>) -> bool {
        let mut inner = lock(&self.inner);
        if inner.closing {
            return false;
        }
        let Some(pipe) = inner.pipe.as_ref() else {
            return false;
        };
        if !inner.queue.is_empty() {
            inner.queue.push_back(frame);
            return true;
        }
        let mut direct = &pipe.direct;
        match write_some(|b| direct.write(b), &frame) {
            Wrote::All => true,
            Wrote::Part(written) => {
                inner.offset = written;
                inner.queue.push_back(frame);
                drop(inner);
                self.wake.notify_one();
                true
            }
            Wrote::Broken => {
                inner.pipe = None;
                false
            }
        }
    }

    /// Closes the pipe once the queued frames are written (the worker then reads end of file).
    /// Later sends fail.
    pub(crate) fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.closing = true;
        if inner.queue.is_empty() {
            inner.pipe = None;
        }
        drop(inner);
        self.wake.notify_one();
    }
}

/// Writes queued frames as the pipe makes room; ends when the pipe is closed or broken.
async fn flush(writer: Arc<FrameWriter>) {
    loop {
        // The pipe to wait on for room, or None to wait for a frame.
        let full = {
            let mut inner = lock(&writer.inner);
            loop {
                let Some(pipe) = inner.pipe.as_ref().map(|p| p.tokio.clone()) else {
                    inner.queue.clear();
                    return;
                };
                let Some(front) = inner.queue.front() else {
                    if inner.closing {
                        inner.pipe = None;
                        return;
                    }
                    break None;
                };
                match write_some(|b| pipe.try_write(b), &front[inner.offset..]) {
                    Wrote::All => {
                        inner.queue.pop_front();
                        inner.offset = 0;
                    }
                    Wrote::Part(n) => {
                        inner.offset += n;
                        break Some(pipe);
                    }
                    Wrote::Broken => {
                        inner.pipe = None;
                        inner.queue.clear();
                        return;
                    }
                }
            }
        };
        match full {
            Some(pipe) => {
                if pipe.writable().await.is_err() {
                    let mut inner = lock(&writer.inner);
                    inner.pipe = None;
                    inner.queue.clear();
                    return;
                }
            }
            None => writer.wake.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn pair() -> (Arc<FrameWriter>, pipe::Receiver) {
        let (tx, rx) = pipe::pipe().expect("a pipe");
        (FrameWriter::start(tx).expect("the writer starts"), rx)
    }

    #[tokio::test]
    async fn small_frames_are_written_at_once_in_order() {
        let (writer, mut rx) = pair();
        assert!(writer.send(b"abc".to_vec()));
        assert!(writer.send(b"def".to_vec()));
        assert!(lock(&writer.inner).queue.is_empty(), "nothing was queued");
        writer.close();
        assert!(
            !writer.send(b"late".to_vec()),
            "a closed writer refuses frames"
        );
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abcdef");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_larger_than_the_pipe_queue_whole_and_stay_in_order() {
        let (writer, mut rx) = pair();
        // Several frames, each larger than a pipe's buffer (64 KiB on Linux), with small ones
        // between them: the reader must see every byte, frame after frame.
        let frames: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                let len = if i % 2 == 0 { 200_000 } else { 10 };
                vec![b'a' + i; len]
            })
            .collect();
        for f in &frames {
            assert!(writer.send(f.clone()));
        }
        assert!(
            !lock(&writer.inner).queue.is_empty(),
            "a frame larger than the pipe waits in the queue"
        );
        writer.close();
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got,
            frames.concat(),
            "all bytes, in order, then end of file"
        );
    }

    #[tokio::test]
    async fn a_broken_pipe_refuses_frames() {
        let (writer, rx) = pair();
        drop(rx);
        assert!(!writer.send(b"x".to_vec()), "EPIPE: the reader is gone");
        assert!(!writer.send(b"y".to_vec()));
    }
}
