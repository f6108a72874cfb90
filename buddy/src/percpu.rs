//! A heap shared between CPUs where each CPU reserves a block of up to
//! 2 MiB and hands out single frames from it, so most single-frame
//! allocations and frees touch only that CPU's reservation, not the heap.
//!
//! The heap sees a reservation as one allocated block. Its frames are
//! tracked by a bitmap (bit set: free in the reservation) behind a lock of
//! the reservation's own, on a cache line of its own; a frame given out is
//! freed by setting its bit again, by whichever CPU frees it (the block is
//! found from a small table of reservation starts that changes only when a
//! reservation does). So a CPU that allocates and frees its own frames
//! takes one uncontended lock per call and never the heap's lock.
//!
//! Why a lock per reservation rather than atomic bit operations with no
//! lock: a lock-free free must also make sure the reservation it sets a
//! bit in is not being handed back at that moment, which takes a reference
//! count or an epoch, that is two more atomic operations per call on the
//! same line; taking the reservation's lock is one atomic operation and a
//! store, and makes handing back trivially safe.
//!
//! When a reservation is used up, it is handed back (see
//! [`crate::handback`]: its frames become single allocated frames of the
//! heap, freed to the heap when their owners free them) and a new one is
//! reserved. An allocation the reservations cannot serve (any other order
//! or constraint, or no reservation to be had) goes to the heap; if the
//! heap fails, every reservation is handed back, so their free frames merge
//! into the heap, and the heap is asked again: an allocation fails only
//! where one heap over the same frames would.

use core::fmt;

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};

use crate::alloc::make_block;
use crate::error::{AllocError, FreeError};
use crate::heap::Heap;
use crate::locked::{Locked, LockedHeap};
use crate::range::Constraints;
use crate::{Block, Mfn, Order};

/// The order of a reservation: 2 MiB, or the heap's largest order if
/// smaller (or less, when no larger block is free).
pub const RESERVATION_ORDER: Order = Order::SIZE_2M;

/// Words of a reservation's bitmap.
const WORDS: usize = 1 << (RESERVATION_ORDER.get() - 6);

/// A reservation-table entry with no reservation.
const NONE: u64 = u64::MAX;

/// One CPU's reservation: an allocated block of the heap, and which of its
/// frames are free.
#[derive(Debug)]
struct Reservation {
    /// First frame; [`NONE`] for no reservation.
    start: u64,
    order: u8,
    /// Bit `i`: frame `start + i` is free in the reservation.
    free: [u64; WORDS],
    /// Free frames in the reservation.
    count: u64,
    /// The word to search first: every word before it is zero.
    hint: usize,
}

impl Reservation {
    const EMPTY: Reservation = Reservation {
        start: NONE,
        order: 0,
        free: [0; WORDS],
        count: 0,
        hint: 0,
    };

    /// The table entry for this reservation: its start shifted up, its order
    /// below.
    fn entry(&self) -> u64 {
        if self.start == NONE {
            NONE
        } else {
            (self.start << 8) | u64::from(self.order)
        }
    }

    /// Gives out a free frame, if any.
    #[inline(always)]
    fn take(&mut self) -> Option<u64> {
        let words = (1usize << self.order).div_ceil(64);
        while self.hint < words {
            let w = self.free[self.hint];
            if w != 0 {
                self.free[self.hint] = w & (w - 1);
                self.count -= 1;
                return Some(self.start + (self.hint as u64) * 64 + u64::from(w.trailing_zeros()));
            }
            self.hint += 1;
        }
        None
    }

    /// Takes over the allocated `block`, every frame free.
    fn fill(&mut self, block: Block) {
        let frames = block.frames();
        self.start = block.start().get();
        self.order = block.order().get();
        self.count = frames;
        self.hint = 0;
        for (i, w) in self.free.iter_mut().enumerate() {
            let lo = i as u64 * 64;
            *w = match frames.saturating_sub(lo) {
                0 => 0,
                n if n >= 64 => u64::MAX,
                n => (1 << n) - 1,
            };
        }
    }

    /// Whether frame `pfn` lies in the reservation.
    #[inline(always)]
    fn holds(&self, pfn: u64) -> bool {
        self.start != NONE && pfn >= self.start && pfn - self.start < 1 << self.order
    }

    /// Frees frame `pfn` of the reservation, given out with `order` (which
    /// must be 0 to be right; `heap` checks any other as a block first, as
    /// a free to the heap would).
    #[inline(always)]
    fn free(&mut self, pfn: Mfn, order: Order, heap: &LockedHeap<'_>) -> Result<(), FreeError> {
        let i = pfn.get() - self.start;
        let (word, m) = ((i / 64) as usize, 1u64 << (i % 64));
        let is_free = self.free[word] & m != 0;
        if order.get() != 0 {
            let (p, k) = heap.lock().check_block(pfn, order)?;
            let block = make_block(p, k);
            return Err(if is_free {
                FreeError::AlreadyFree { pfn }
            } else {
                FreeError::WrongOrder {
                    block,
                    allocated: Order::SIZE_4K,
                }
            });
        }
        if is_free {
            return Err(FreeError::AlreadyFree { pfn });
        }
        self.free[word] |= m;
        self.count += 1;
        self.hint = self.hint.min(word);
        Ok(())
    }

    /// Hands the reservation back to `heap`, leaving none.
    fn hand_back(&mut self, heap: &mut Heap<'_>) {
        if self.start != NONE {
            heap.hand_back(self.start, usize::from(self.order), &self.free);
        }
        *self = Self::EMPTY;
    }
}

/// A reservation on a cache-line pair of its own (CPUs fetch lines in
/// pairs), so CPUs using their own reservations share no line.
#[repr(align(128))]
struct Slot(Locked<Reservation>);

/// The reservation table, apart from the reservations, so that a free
/// looking for its reservation reads lines that change only when a
/// reservation does.
#[repr(align(128))]
struct Table<const N: usize>([AtomicU64; N]);

/// A [`LockedHeap`] with a reservation of up to 2 MiB per CPU (`N` CPUs)
/// in front of it: single-frame allocations with no constraint come from
/// the calling CPU's reservation, and frees of frames given out from a
/// reservation go back to it, whichever CPU frees them; everything else
/// goes to the heap.
///
/// The heap counts reserved frames as allocated; [`PerCpuHeap::free_frames`]
/// counts them as free. Every free is checked at once, as the heap checks
/// it: a double free, a wrong order or a frame never given out is a
/// [`FreeError`], and changes nothing. An allocation fails only where one
/// heap over the same frames would, with every reservation handed back.
pub struct PerCpuHeap<'m, const N: usize> {
    table: Table<N>,
    slots: [Slot; N],
    heap: LockedHeap<'m>,
}

impl<const N: usize> fmt::Debug for PerCpuHeap<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuHeap")
            .field("cpus", &N)
            .finish_non_exhaustive()
    }
}

impl<'m, const N: usize> PerCpuHeap<'m, N> {
    /// Puts `heap` behind a lock with an empty reservation for each of `N`
    /// CPUs.
    pub fn new(heap: Heap<'m>) -> Self {
        Self {
            table: Table(core::array::from_fn(|_| AtomicU64::new(NONE))),
            slots: core::array::from_fn(|_| Slot(Locked::new(Reservation::EMPTY))),
            heap: LockedHeap::new(heap),
        }
    }

    /// The heap behind the reservations, for what this type does not
    /// offer (adding memory, claims, statistics). Reserved frames are
    /// allocated there.
    #[must_use]
    pub fn heap(&self) -> &LockedHeap<'m> {
        &self.heap
    }

    /// Hands every reservation back and returns the heap.
    pub fn into_inner(self) -> Heap<'m> {
        self.drain_all();
        self.heap.into_inner()
    }

    /// Allocates a block of `order` whose frames satisfy `constraints`, as
    /// [`Heap::alloc`] does: a single frame with no constraint from the
    /// reservation of CPU `cpu` (any number: it is taken modulo `N`),
    /// anything else from the heap; failing that, after handing every
    /// reservation back, from the heap.
    #[inline]
    pub fn alloc(
        &self,
        cpu: usize,
        order: Order,
        constraints: Constraints,
    ) -> Result<Block, AllocError> {
        if order.get() == 0 && constraints == Constraints::ANY && N != 0 {
            if let Some(p) = self.alloc_reserved(cpu % N) {
                return Ok(make_block(p, 0));
            }
        } else if let Ok(block) = self.heap.alloc(order, constraints) {
            return Ok(block);
        }
        self.alloc_after_drain(order, constraints)
    }

    /// Hands every reservation back and asks the heap again, as long as
    /// the hand-backs return free frames: another CPU may reserve what a
    /// hand-back returned before this one asks, but only by using up its
    /// reservation or asking again, so the loop ends.
    #[cold]
    #[inline(never)]
    fn alloc_after_drain(
        &self,
        order: Order,
        constraints: Constraints,
    ) -> Result<Block, AllocError> {
        loop {
            let returned = self.drain_all();
            let got = self.heap.alloc(order, constraints);
            if got.is_ok() || returned == 0 {
                return got;
            }
        }
    }

    /// A frame from reservation `i`, reserving anew if it is used up.
    #[inline(always)]
    fn alloc_reserved(&self, i: usize) -> Option<u64> {
        let mut r = self.slots[i].0.lock();
        if let Some(p) = r.take() {
            return Some(p);
        }
        self.reserve(i, &mut r)
    }

    /// Hands used-up reservation `i` (locked as `r`) back and reserves a
    /// new block; gives out its first frame.
    #[inline(never)]
    fn reserve(&self, i: usize, r: &mut Reservation) -> Option<u64> {
        let mut heap = self.heap.lock();
        r.hand_back(&mut heap);
        let order = RESERVATION_ORDER.min(heap.max_order());
        let block = heap.alloc_at_most(order, Constraints::ANY).ok();
        drop(heap);
        if let Some(block) = block {
            r.fill(block);
        }
        // Published after the heap's change and before any frame of the
        // new block is given out (see `free`).
        self.table.0[i].store(r.entry(), Ordering::Release);
        r.take()
    }

    /// Hands CPU `cpu`'s reservation back to the heap (its free frames
    /// merge there; the frames it gave out become single allocated frames
    /// of the heap).
    /// Returns how many free frames it returned.
    pub fn drain(&self, cpu: usize) -> u64 {
        if N == 0 {
            return 0;
        }
        let i = cpu % N;
        let mut r = self.slots[i].0.lock();
        let free = r.count;
        if r.start != NONE {
            r.hand_back(&mut self.heap.lock());
            self.table.0[i].store(NONE, Ordering::Release);
        }
        free
    }

    /// Hands every reservation back to the heap, one at a time; returns how
    /// many free frames they returned.
    pub fn drain_all(&self) -> u64 {
        (0..N).map(|cpu| self.drain(cpu)).sum()
    }

    /// Frees the allocated block of `order` at `pfn`, as [`Heap::free`]
    /// does: into the reservation it was given out from, if it still is
    /// one, else to the heap.
    #[inline]
    pub fn free(&self, pfn: Mfn, order: Order) -> Result<(), FreeError> {
        let p = pfn.get();
        for (i, entry) in self.table.0.iter().enumerate() {
            let e = entry.load(Ordering::Acquire);
            // A frame given out from a reservation was given out after its
            // entry was published; the entry changes only after the
            // reservation was handed back to the heap. So the entry read
            // here is this reservation's, or the heap already knows the
            // frame.
            if e != NONE && p >= e >> 8 && p - (e >> 8) < 1 << (e & 0xff) {
                let mut r = self.slots[i].0.lock();
                if r.holds(p) {
                    return r.free(pfn, order, &self.heap);
                }
                break;
            }
        }
        self.heap.free(pfn, order)
    }

    /// Frees a [`Block`] returned by an allocation.
    #[inline]
    pub fn free_block(&self, block: Block) -> Result<(), FreeError> {
        self.free(block.start(), block.order())
    }

    /// Free frames: the heap's and the reservations' (each counted under
    /// its lock, so only a snapshot while other CPUs work).
    pub fn free_frames(&self) -> u64 {
        let reserved: u64 = self.slots.iter().map(|s| s.0.lock().count).sum();
        reserved + self.heap.free_frames()
    }
}
