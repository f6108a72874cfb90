//! The calling thread's CPU time, for timing single-threaded workloads on a
//! shared machine: time spent waiting for a CPU while other processes run
//! does not count, so ratios between two allocators stay fair under load.

/// A point in the calling thread's CPU time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuInstant(u64);

impl CpuInstant {
    /// Now, in this thread's CPU time.
    pub(crate) fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable `timespec`; CLOCK_THREAD_CPUTIME_ID
        // is supported on every Linux, and on failure `ts` stays zero.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
        if rc != 0 {
            return Self(0);
        }
        Self(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    /// Nanoseconds of this thread's CPU time since `self`.
    pub(crate) fn elapsed_ns(self) -> f64 {
        Self::now().0.saturating_sub(self.0) as f64
    }
}
