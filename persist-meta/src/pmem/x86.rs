//! [`Pmem`] over a raw x86-64 memory region: the crate's only unsafe code.
//!
//! Write-back uses the best instruction CPUID reports (Intel SDM Vol. 2A,
//! CPUID leaf 07H sub-leaf 0: EBX bit 24 = CLWB, EBX bit 23 = CLFLUSHOPT;
//! leaf 01H: EDX bit 19 = CLFLUSH):
//!
//! - CLWB writes the line back and may keep it cached;
//! - CLFLUSHOPT writes it back and evicts it;
//! - CLFLUSH does the same, strongly ordered (slow, but on every x86-64).
//!
//! Both CLWB and CLFLUSHOPT are ordered only by fences, so [`Pmem::fence`]
//! is SFENCE, which orders them (SDM Vol. 2A, CLWB: "ordered with respect
//! to ... SFENCE"). Stores to the same line are not reordered with each
//! other or with a later CLWB/CLFLUSHOPT of that line (SDM Vol. 3A §9.2.2,
//! the write-back memory ordering rules).
//!
//! 8-byte stores are volatile writes of an aligned `u64`: one `mov`, which
//! x86 makes failure-atomic for aligned quadwords. Byte-range stores are a
//! plain copy; the log never relies on their internal order.

#![allow(
    unsafe_code,
    reason = "raw-pointer access to the region and the CPUID, CLWB, CLFLUSHOPT, CLFLUSH and SFENCE instructions"
)]

#[cfg(not(miri))]
use core::arch::asm;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use super::{CACHE_LINE, CacheLine, Pmem, PmemError, checked_range, checked_word, line_numbers};

/// The cache-line write-back instruction an [`X86Pmem`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushInstruction {
    /// CLWB: write back, keep the line cached.
    Clwb,
    /// CLFLUSHOPT: write back and invalidate, weakly ordered.
    Clflushopt,
    /// CLFLUSH: write back and invalidate, strongly ordered.
    Clflush,
}

impl FlushInstruction {
    /// The best instruction this CPU supports (CLWB, else CLFLUSHOPT, else
    /// CLFLUSH, which every x86-64 processor has).
    pub fn detect() -> Self {
        [Self::Clwb, Self::Clflushopt]
            .into_iter()
            .find(|i| i.is_supported())
            .unwrap_or(Self::Clflush)
    }

    /// Whether this CPU executes the instruction (instead of raising #UD).
    pub fn is_supported(self) -> bool {
        let leaf7_ebx = if cpuid(0, 0).0 >= 7 { cpuid(7, 0).1 } else { 0 };
        match self {
            Self::Clwb => leaf7_ebx & (1 << 24) != 0,
            Self::Clflushopt => leaf7_ebx & (1 << 23) != 0,
            Self::Clflush => cpuid(1, 0).3 & (1 << 19) != 0,
        }
    }

    /// The mnemonic.
    pub fn name(self) -> &'static str {
        match self {
            Self::Clwb => "clwb",
            Self::Clflushopt => "clflushopt",
            Self::Clflush => "clflush",
        }
    }
}

/// Executes CPUID for `leaf` and `subleaf`, returning EAX, EBX, ECX, EDX.
#[cfg(not(miri))]
fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: CPUID exists on every x86-64 processor, reads no memory and
    // writes only the four registers named here. LLVM reserves RBX, so it is
    // saved in a scratch register and restored around the instruction.
    unsafe {
        asm!(
            "mov {saved:r}, rbx",
            "cpuid",
            "xchg {saved:r}, rbx",
            saved = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nostack, preserves_flags, nomem),
        );
    }
    (eax, ebx, ecx, edx)
}

/// Miri cannot execute inline assembly: under it the CPU reports CLFLUSH
/// only (which every x86-64 has), so the raw-pointer code around the
/// instructions is still checked.
#[cfg(miri)]
fn cpuid(leaf: u32, _subleaf: u32) -> (u32, u32, u32, u32) {
    match leaf {
        0 => (1, 0, 0, 0),
        1 => (0, 0, 0, 1 << 19),
        _ => (0, 0, 0, 0),
    }
}

/// Why an [`X86Pmem`] could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X86PmemError {
    /// The region does not start on a cache-line boundary.
    Misaligned {
        /// Its address.
        address: usize,
    },
    /// The requested write-back instruction raises #UD on this CPU.
    Unsupported {
        /// The instruction.
        instruction: FlushInstruction,
    },
}

impl fmt::Display for X86PmemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Misaligned { address } => {
                write!(f, "region at {address:#x} is not cache-line aligned")
            }
            Self::Unsupported { instruction } => {
                write!(f, "this CPU does not support {}", instruction.name())
            }
        }
    }
}

impl core::error::Error for X86PmemError {}

/// A memory region written back with CLWB, CLFLUSHOPT or CLFLUSH and
/// ordered with SFENCE.
///
/// Over NVDIMM memory mapped write-back cacheable this is persistent; over
/// ordinary DRAM the instructions still execute (benchmarks measure them).
#[derive(Debug)]
pub struct X86Pmem<'a> {
    base: NonNull<u8>,
    size: u64,
    flush: FlushInstruction,
    region: PhantomData<&'a mut [u8]>,
}

// SAFETY: an `X86Pmem` is the only way to reach its region (by the contract
// of `from_raw`, or by holding the unique borrow in `new`), so moving it to
// another thread moves all access with it.
unsafe impl Send for X86Pmem<'_> {}

impl<'a> X86Pmem<'a> {
    /// A region over borrowed, cache-line aligned memory (for example a
    /// `Vec<CacheLine>` in a benchmark, or NVRAM the caller already maps as
    /// a slice), with the best write-back instruction of this CPU.
    pub fn new(lines: &'a mut [CacheLine]) -> Self {
        let size = (lines.len() as u64).saturating_mul(CACHE_LINE);
        Self {
            base: NonNull::from(lines).cast(),
            size,
            flush: FlushInstruction::detect(),
            region: PhantomData,
        }
    }

    /// A region over `size` bytes at `base`, e.g. an NVDIMM range the
    /// hypervisor has mapped.
    ///
    /// # Safety
    ///
    /// For all of `'a`: `base .. base + size` must be one allocation (or
    /// mapping) valid for reads and writes, not accessed by anything else
    /// (no other references, threads or devices writing it), and
    /// `size` must not exceed `isize::MAX`.
    pub unsafe fn from_raw(base: NonNull<u8>, size: usize) -> Result<Self, X86PmemError> {
        let address = base.as_ptr() as usize;
        if address % CACHE_LINE as usize != 0 {
            return Err(X86PmemError::Misaligned { address });
        }
        Ok(Self {
            base,
            size: size as u64,
            flush: FlushInstruction::detect(),
            region: PhantomData,
        })
    }

    /// Uses `instruction` for write-back instead of the detected one (to
    /// compare them); refused if this CPU lacks it.
    pub fn with_flush(mut self, instruction: FlushInstruction) -> Result<Self, X86PmemError> {
        if !instruction.is_supported() {
            return Err(X86PmemError::Unsupported { instruction });
        }
        self.flush = instruction;
        Ok(self)
    }

    /// The write-back instruction in use.
    pub fn flush_instruction(&self) -> FlushInstruction {
        self.flush
    }

    /// A pointer `offset` bytes into the region; `offset` must have been
    /// checked against the size.
    #[inline]
    fn at(&self, offset: usize) -> *mut u8 {
        self.base.as_ptr().wrapping_add(offset)
    }
}

impl Pmem for X86Pmem<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    #[inline]
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let range = checked_range(offset, buf.len() as u64, self.size)?;
        // SAFETY: `range` lies inside the region, which is valid for reads
        // and accessed by no one else (constructor contract), so it cannot
        // overlap `buf`, a distinct borrow.
        unsafe { ptr::copy_nonoverlapping(self.at(range.start), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    #[inline]
    fn store_u64(&mut self, offset: u64, value: u64) -> Result<(), PmemError> {
        let range = checked_word(offset, self.size)?;
        // The base is line aligned and `offset` a multiple of 8.
        let word = self.at(range.start).cast::<u64>();
        // SAFETY: the word lies inside the region (checked), is 8-byte
        // aligned, and the region is valid for writes with no other
        // accessor; `&mut self` excludes concurrent use through this value.
        unsafe { ptr::write_volatile(word, value.to_le()) };
        Ok(())
    }

    #[inline]
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        let range = checked_range(offset, data.len() as u64, self.size)?;
        // SAFETY: as in `read`, with the region valid for writes and `data`
        // a distinct borrow.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.at(range.start), data.len()) };
        Ok(())
    }

    #[inline]
    fn write_back(&mut self, offset: u64, len: u64) -> Result<(), PmemError> {
        checked_range(offset, len, self.size)?;
        for line in line_numbers(offset, len) {
            // Below `size`, which fits a `usize` (checked above).
            let p = self.at((line * CACHE_LINE) as usize);
            #[cfg(not(miri))]
            match self.flush {
                // SAFETY: `p` points into the region (a line overlapping a
                // checked range; the region is whole lines, or the line's
                // first byte is in range since lines are aligned). The
                // instruction reads no program-visible memory and CPUID
                // reported it. No `nomem`: it must not move across stores.
                FlushInstruction::Clwb => unsafe {
                    asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags));
                },
                // SAFETY: as for CLWB.
                FlushInstruction::Clflushopt => unsafe {
                    asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags));
                },
                // SAFETY: as for CLWB; CLFLUSH exists on every x86-64.
                FlushInstruction::Clflush => unsafe {
                    asm!("clflush [{0}]", in(reg) p, options(nostack, preserves_flags));
                },
            }
            // Miri cannot execute the write-back instructions; it checks
            // instead that each line they would be given lies in the region.
            // SAFETY: `p` points into the region (as above), valid for reads.
            #[cfg(miri)]
            let _ = unsafe { ptr::read_volatile(p) };
        }
        Ok(())
    }

    #[inline]
    fn fence(&mut self) {
        // SAFETY: SFENCE only orders earlier stores and write-backs; it
        // touches no registers or memory. No `nomem`: it is a compiler
        // barrier for the stores it orders.
        #[cfg(not(miri))]
        unsafe {
            asm!("sfence", options(nostack, preserves_flags));
        }
        // Miri cannot execute SFENCE: a fence of the abstract machine keeps
        // the compiler from moving the stores across it.
        #[cfg(miri)]
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_an_instruction_this_cpu_runs() {
        let detected = FlushInstruction::detect();
        assert!(detected.is_supported());
        assert!(FlushInstruction::Clflush.is_supported());
    }

    #[test]
    fn stores_reads_and_flushes() {
        let mut lines = [CacheLine::ZERO; 4];
        {
            let mut pmem = X86Pmem::new(&mut lines);
            assert_eq!(pmem.size(), 256);
            pmem.store_u64(64, 0xdead_beef_0bad_f00d).unwrap();
            pmem.store(100, b"hello").unwrap();
            for instruction in [
                FlushInstruction::Clwb,
                FlushInstruction::Clflushopt,
                FlushInstruction::Clflush,
            ] {
                if let Ok(p) = X86Pmem::new(&mut [CacheLine::ZERO; 1]).with_flush(instruction) {
                    assert_eq!(p.flush_instruction(), instruction);
                }
            }
            pmem.write_back(60, 50).unwrap();
            pmem.fence();
            assert_eq!(pmem.read_u64(64).unwrap(), 0xdead_beef_0bad_f00d);
            let mut buf = [0; 5];
            pmem.read(100, &mut buf).unwrap();
            assert_eq!(&buf, b"hello");
            assert!(pmem.store_u64(252, 0).is_err());
            assert!(pmem.store(250, &[0; 7]).is_err());
            assert!(pmem.write_back(0, 257).is_err());
        }
        assert_eq!(lines[1].0[0..8], 0xdead_beef_0bad_f00du64.to_le_bytes());
    }

    #[test]
    fn raw_regions_must_be_aligned() {
        let mut lines = [CacheLine::ZERO; 2];
        let base = NonNull::from(&mut lines).cast::<u8>();
        let inside = NonNull::new(base.as_ptr().wrapping_add(8)).unwrap();
        // SAFETY: `lines` outlives both regions and is reached only through
        // them, one at a time.
        let err = unsafe { X86Pmem::from_raw(inside, 64) }.unwrap_err();
        assert!(matches!(err, X86PmemError::Misaligned { .. }));
        {
            // SAFETY: as above.
            let mut pmem = unsafe { X86Pmem::from_raw(base, 128) }.unwrap();
            pmem.store_u64(120, 7).unwrap();
            pmem.write_back(120, 8).unwrap();
            pmem.fence();
        }
        assert_eq!(lines[1].0[56], 7);
    }
}
