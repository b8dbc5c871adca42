//! Running regorus where nothing a policy does can reach gitward: in a forked child process.
//!
//! Rego comes from the repository, and regorus can be driven past what any in-process limit
//! catches: deep recursion overflows the stack (an abort, not a panic), one builtin call can
//! allocate gigabytes between two of regorus's memory checks, and an allocation that fails
//! aborts. Checks on the parsed policy catch the known cases early and at their line, but
//! only a separate process makes "no content of the repository can crash or exhaust
//! gitward" a guarantee: the child compiles or evaluates with the parent's memory
//! copy-on-write (nothing is serialized in), under an address-space limit and a deadline,
//! on a stack of known size, and sends its results back over a pipe. A child that dies
//! takes nobody with it; the step it was on (kept in a shared page, so it survives the
//! crash) says which policy and resource killed it.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Stack of the thread a child runs on (reserved, touched only as deep as it goes).
pub const STACK_BYTES: usize = 256 << 20;

/// Address space a child may add to what it inherits: beyond it, allocations fail and the
/// child dies, not the host.
pub const CHILD_MEMORY_BYTES: u64 = 2 << 30;

/// How much of a dead child's standard error is kept to tell why it died.
const STDERR_TAIL: usize = 4096;

/// How a child's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Finished,
    /// It died: why, in words (the stack overflowed, memory ran out, killed by a signal).
    Died(String),
    /// The deadline passed and it was killed.
    TimedOut,
}

/// What a child sent before it ended, and the step it was on when it ended.
pub struct Run<I> {
    pub items: Vec<I>,
    pub step: u64,
    pub end: End,
}

/// The child's side: it marks each step before taking it and sends items back.
pub struct Child<'a, I> {
    out: BufWriter<File>,
    step: &'a AtomicU64,
    item: PhantomData<I>,
}

impl<I: Serialize> Child<'_, I> {
    /// Marks `step` as in progress: should the child die now, this is the step that killed it.
    pub fn step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }

    /// Sends an item at once, so that it survives a crash in a later step.
    pub fn send(&mut self, item: &I) {
        // A failed write means the parent is gone; the child ends soon either way.
        let _ = serde_json::to_writer(&mut self.out, item);
        let _ = self.out.write_all(b"\n");
        let _ = self.out.flush();
    }
}

/// One page shared between parent and child, holding the child's step.
struct SharedStep(NonNull<std::ffi::c_void>);

impl SharedStep {
    fn new() -> std::io::Result<SharedStep> {
        let length =
            NonZeroUsize::new(std::mem::size_of::<AtomicU64>()).unwrap_or(NonZeroUsize::MIN);
        // SAFETY: a fresh anonymous mapping, zero-filled by the kernel and aligned to a page,
        // used only as one AtomicU64 and unmapped on drop.
        let page = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(SharedStep(page))
    }

    fn get(&self) -> &AtomicU64 {
        // SAFETY: the mapping lives as long as self and is suitably aligned (see `new`).
        unsafe { self.0.cast::<AtomicU64>().as_ref() }
    }
}

impl Drop for SharedStep {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; nothing refers to it after drop.
        let _ = unsafe { munmap(self.0, std::mem::size_of::<AtomicU64>()) };
    }
}

/// Runs `body` in a child process until it returns or `deadline` passes, and returns what it
/// sent. The child runs on a stack of [`STACK_BYTES`] and may allocate
/// [`CHILD_MEMORY_BYTES`] more than the parent holds.
pub fn isolated<I, F>(deadline: Instant, body: F) -> std::io::Result<Run<I>>
where
    I: Serialize + DeserializeOwned + Send,
    F: FnOnce(&mut Child<'_, I>) + Send,
{
    std::thread::scope(|scope| {
        // The child runs on a copy of the forking thread's stack: fork from one of known size.
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, || fork_and_collect(deadline, body))?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn fork_and_collect<I, F>(deadline: Instant, body: F) -> std::io::Result<Run<I>>
where
    I: Serialize + DeserializeOwned + Send,
    F: FnOnce(&mut Child<'_, I>),
{
    // The allocator sets up this thread's heap on its first allocation; done before the fork,
    // the child never needs an allocator lock that another of the parent's threads may have
    // held at the instant of the fork.
    std::hint::black_box(Vec::<u8>::with_capacity(64));
    let shared = SharedStep::new()?;
    let (items_read, items_write) = pipe()?;
    let (errors_read, errors_write) = pipe()?;
    // SAFETY: the child only runs `body` (regorus, allocation, writes to its pipe) and leaves
    // with `_exit`, never returning into the parent's code or running its destructors.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(items_read);
            drop(errors_read);
            run_child(&shared, items_write, errors_write, body)
        }
        ForkResult::Parent { child } => {
            drop(items_write);
            drop(errors_write);
            let (items, end) = collect(child, deadline, items_read, errors_read);
            Ok(Run {
                items,
                step: shared.get().load(Ordering::Relaxed),
                end,
            })
        }
    }
}

fn run_child<I, F>(shared: &SharedStep, items: OwnedFd, errors: OwnedFd, body: F) -> !
where
    I: Serialize,
    F: FnOnce(&mut Child<'_, I>),
{
    let _ = nix::unistd::dup2_stderr(&errors);
    drop(errors);
    limit_address_space();
    let mut child = Child {
        out: BufWriter::new(File::from(items)),
        step: shared.get(),
        item: PhantomData,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut child)));
    let _ = child.out.flush();
    // SAFETY: ends the child without running the parent's exit handlers or destructors.
    unsafe { nix::libc::_exit(if outcome.is_ok() { 0 } else { 101 }) }
}

/// Caps the child's address space at what it has plus [`CHILD_MEMORY_BYTES`].
fn limit_address_space() {
    let Some(current) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().next()?.parse::<u64>().ok())
    else {
        return;
    };
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096);
    let wanted = current
        .saturating_mul(page)
        .saturating_add(CHILD_MEMORY_BYTES);
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_AS) {
        let _ = setrlimit(Resource::RLIMIT_AS, wanted.min(hard), hard);
    }
}

/// Reads the child's items until it ends, killing it at the deadline.
fn collect<I: DeserializeOwned>(
    child: Pid,
    deadline: Instant,
    items: OwnedFd,
    errors: OwnedFd,
) -> (Vec<I>, End) {
    let timed_out = AtomicBool::new(false);
    let (finished, finishing) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let timed_out = &timed_out;
        scope.spawn(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            if let Err(mpsc::RecvTimeoutError::Timeout) = finishing.recv_timeout(wait) {
                timed_out.store(true, Ordering::Relaxed);
                let _ = kill(child, Signal::SIGKILL);
            }
        });
        let stderr = scope.spawn(move || tail(File::from(errors)));
        let mut received = Vec::new();
        for line in BufReader::new(File::from(items)).split(b'\n') {
            let Ok(line) = line else { break };
            // A line cut short by the child's death is dropped with it.
            if let Ok(item) = serde_json::from_slice(&line) {
                received.push(item);
            }
        }
        let status = waitpid(child, None);
        let _ = finished.send(());
        let stderr = stderr.join().unwrap_or_default();
        let end = if timed_out.load(Ordering::Relaxed) {
            End::TimedOut
        } else {
            match status {
                Ok(WaitStatus::Exited(_, 0)) => End::Finished,
                Ok(status) => End::Died(why_it_died(&status, &stderr)),
                Err(error) => End::Died(format!("lost: {error}")),
            }
        };
        (received, end)
    })
}

fn tail(mut from: File) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = from.read(&mut buffer) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > 2 * STDERR_TAIL {
            kept.drain(..kept.len() - STDERR_TAIL);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Why a child died, in words a policy author can act on; never its raw output, which may
/// hold anything the policy computed.
fn why_it_died(status: &WaitStatus, stderr: &str) -> String {
    if stderr.contains("overflowed its stack") {
        "the stack overflowed (unbounded recursion or nesting)".to_owned()
    } else if stderr.contains("memory allocation of") || stderr.contains("capacity overflow") {
        format!(
            "memory ran out (more than {} GiB)",
            CHILD_MEMORY_BYTES >> 30
        )
    } else if stderr.contains("panicked at") {
        "the policy engine failed internally".to_owned()
    } else {
        match status {
            WaitStatus::Signaled(_, signal, _) => format!("killed by {signal}"),
            WaitStatus::Exited(_, code) => format!("exited with status {code}"),
            other => format!("stopped ({other:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn items_come_back_and_the_run_finishes() {
        let run = isolated::<u32, _>(soon(), |child| {
            for i in 0..3 {
                child.step(i);
                child.send(&(i as u32 * 10));
            }
        })
        .unwrap();
        assert_eq!(run.items, [0, 10, 20]);
        assert_eq!(run.end, End::Finished);
        assert_eq!(run.step, 2);
    }

    #[test]
    fn a_stack_overflow_kills_the_child_only_and_names_its_step() {
        fn deep(n: u64) -> u64 {
            if n == u64::MAX {
                return 0;
            }
            let buffer = [n; 64];
            std::hint::black_box(&buffer);
            deep(n + 1) + buffer[0]
        }
        let run = isolated::<u64, _>(soon(), |child| {
            child.send(&1);
            child.step(7);
            child.send(&deep(0));
        })
        .unwrap();
        assert_eq!(run.items, [1]);
        assert_eq!(run.step, 7);
        assert!(
            matches!(&run.end, End::Died(why) if why.contains("stack overflowed")),
            "{:?}",
            run.end
        );
    }

    #[test]
    fn an_allocation_beyond_the_limit_kills_the_child_only() {
        let run = isolated::<usize, _>(soon(), |child| {
            let huge = vec![1u8; (CHILD_MEMORY_BYTES + (1 << 30)) as usize];
            child.send(&huge.len());
        })
        .unwrap();
        assert!(run.items.is_empty());
        assert!(
            matches!(&run.end, End::Died(why) if why.contains("memory ran out")),
            "{:?}",
            run.end
        );
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let run = isolated::<u8, _>(Instant::now() + Duration::from_millis(200), |_| {
            loop {
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .unwrap();
        assert_eq!(run.end, End::TimedOut);
    }
}
