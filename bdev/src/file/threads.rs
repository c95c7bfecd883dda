//! Thread-pool engine: a few worker threads per bdev doing `pread`/`pwrite` (`FileExt`), `fdatasync` and
//! `fallocate`. Channels send jobs over an unbounded channel (so `submit` never blocks) and receive completions
//! over their own channel. Workers exit when the pool shrinks (after the
//! jobs queued before) or when the bdev and all its channels are gone.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::FileCtx;
use crate::{sys, BdevError, Channel, Completion, Io, Op};

struct Job {
    ctx: Arc<FileCtx>,
    tag: u64,
    op: Op,
    reply: Sender<Completion>,
}

/// What a worker receives: a job, or the order to exit (the pool shrinks).
enum Work {
    Job(Job),
    Exit,
}

/// The worker threads of one bdev (SCST's `threads_num`): their number can change while the bdev is in use.
pub(crate) struct Workers {
    jobs: Sender<Work>,
    /// Kept to start more workers on the same queue.
    queue: Receiver<Work>,
    name: String,
    /// Workers running (or asked to start) minus those asked to exit.
    count: usize,
    /// Number of the next worker thread (thread names stay unique).
    next: usize,
}

impl Workers {
    pub(crate) fn start(name: &str, threads: usize) -> Result<Workers, BdevError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Work>();
        let mut w = Workers { jobs: tx, queue: rx, name: name.to_string(), count: 0, next: 0 };
        w.resize(threads)?;
        Ok(w)
    }

    /// Starts or stops workers until `threads` run. A stopping worker finishes the jobs queued before it was told
    /// to stop; jobs are never lost.
    pub(crate) fn resize(&mut self, threads: usize) -> Result<(), BdevError> {
        while self.count < threads {
            let rx = self.queue.clone();
            std::thread::Builder::new()
                .name(format!("bdev-{}-io{}", self.name, self.next))
                .spawn(move || {
                    for work in rx.iter() {
                        let Work::Job(Job { ctx, tag, mut op, reply }) = work else { break };
                        let result = execute(&ctx, &mut op);
                        // The channel may be gone; the buffer then returns to its pool here.
                        let _ = reply.send(Completion::of(tag, op, result));
                    }
                })
                .map_err(BdevError::Io)?;
            self.next += 1;
            self.count += 1;
        }
        while self.count > threads {
            // The receiver is alive (self.queue), so this cannot fail.
            let _ = self.jobs.send(Work::Exit);
            self.count -= 1;
        }
        Ok(())
    }

    /// How many workers run.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.count
    }
}

fn execute(ctx: &FileCtx, op: &mut Op) -> Result<(), BdevError> {
    let file = &*ctx.file;
    match op {
        Op::Read { offset, buf } => file.read_exact_at(buf, *offset)?,
        Op::Write { offset, buf, fua } => {
            file.write_all_at(buf, *offset)?;
            if *fua {
                file.sync_data()?;
            }
        }
        Op::Flush => file.sync_data()?,
        Op::Unmap { offset, len } => zero(ctx, *offset, *len, sys::PUNCH_HOLE, &ctx.punch_ok)?,
        Op::WriteZeroes { offset, len } => {
            zero(ctx, *offset, *len, sys::ZERO_RANGE, &ctx.zero_range_ok)?
        }
        Op::Allocation { offset, len, buf } => ctx.allocation(*offset, *len, buf),
    }
    Ok(())
}

/// Zeroes a range with `fallocate(mode)`, or by writing zeros when the file cannot (remembered in `ok`).
fn zero(
    ctx: &FileCtx,
    offset: u64,
    len: u64,
    mode: i32,
    ok: &std::sync::atomic::AtomicBool,
) -> Result<(), BdevError> {
    if len == 0 {
        return Ok(());
    }
    if ok.load(Ordering::Relaxed) {
        match sys::fallocate(&ctx.file, mode, offset, len) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error().is_some_and(sys::fallocate_unsupported) => {
                tracing::debug!(error = %e, mode, "fallocate unsupported; writing zeros");
                ok.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let zeros = ctx.zeros()?;
    let src = zeros.as_slice();
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let n = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(src.len());
        ctx.file.write_all_at(&src[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// A channel of the thread-pool engine.
pub(crate) struct ThreadChannel {
    ctx: Arc<FileCtx>,
    jobs: Sender<Work>,
    reply_tx: Sender<Completion>,
    reply_rx: Receiver<Completion>,
    /// Completions produced at submission (validation failures).
    ready: VecDeque<Completion>,
    /// Jobs sent to the workers and not yet received back.
    sent: usize,
}

impl ThreadChannel {
    pub(crate) fn new(ctx: Arc<FileCtx>, workers: &Workers) -> ThreadChannel {
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        ThreadChannel {
            ctx,
            jobs: workers.jobs.clone(),
            reply_tx,
            reply_rx,
            ready: VecDeque::new(),
            sent: 0,
        }
    }
}

impl Channel for ThreadChannel {
    fn submit(&mut self, io: Io) {
        let Io { tag, op } = io;
        if let Err(e) = self.ctx.check(&op) {
            self.ready.push_back(Completion::of(tag, op, Err(e)));
            return;
        }
        let job = Job {
            ctx: Arc::clone(&self.ctx),
            tag,
            op,
            reply: self.reply_tx.clone(),
        };
        match self.jobs.send(Work::Job(job)) {
            Ok(()) => self.sent += 1,
            Err(crossbeam_channel::SendError(Work::Job(job))) => {
                let err = std::io::Error::other("I/O worker threads are gone");
                self.ready
                    .push_back(Completion::of(job.tag, job.op, Err(BdevError::Io(err))));
            }
            Err(crossbeam_channel::SendError(Work::Exit)) => {}
        }
    }

    fn poll(&mut self, done: &mut Vec<Completion>) -> usize {
        let mut n = self.ready.len();
        done.extend(self.ready.drain(..));
        while let Ok(c) = self.reply_rx.try_recv() {
            self.sent -= 1;
            done.push(c);
            n += 1;
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.sent + self.ready.len()
    }
}
