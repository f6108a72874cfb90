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

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use super::*;

    #[test]
    fn thread_cpu_time_is_read_and_moves_forward() {
        let start = CpuInstant::now();
        // A thread that has run this far has used some CPU time; zero is the
        // failed call. Miri has no per-thread CPU clock: there the call fails
        // (its pointer still checked), so zero is the expected answer.
        assert!(start.0 > 0 || cfg!(miri));
        let mut sum = 0u64;
        for i in 0..if cfg!(miri) { 10 } else { 100_000u64 } {
            sum = black_box(sum.wrapping_add(i));
        }
        // 100 000 additions take microseconds of this thread's CPU time,
        // far above the clock's nanosecond resolution.
        if cfg!(miri) {
            assert_eq!(start.elapsed_ns(), 0.0);
        } else {
            assert!(CpuInstant::now().0 > start.0);
            assert!(start.elapsed_ns() > 0.0);
        }
    }
}
