//! A heap shared between CPUs: a `spin` mutex around it (a `loom` mutex
//! when built with `--cfg loom`, so the model checker sees every
//! interleaving of the callers).

use core::ops::DerefMut;

use crate::error::{AllocError, ClaimError, FreeError};
use crate::heap::Heap;
use crate::range::Constraints;
use crate::{Block, MemKind, Mfn, Order};

#[cfg(not(loom))]
type Mutex<T> = spin::Mutex<T>;
#[cfg(loom)]
type Mutex<T> = loom::sync::Mutex<T>;

/// A value behind a spin lock; [`LockedHeap`] and [`LockedHeaps`] are the
/// ones this crate means.
///
/// The value follows the lock word unpadded (a heap's counters start on the
/// next cache line, in the 128-byte pair that CPUs fetch together): a CPU
/// that takes the lock has the counters coming with it. Padding them 128
/// bytes apart, so that a waiting CPU would not touch the holder's lines,
/// measured about 15 % slower with two threads allocating and freeing
/// single frames through one lock.
#[derive(Debug)]
pub struct Locked<T> {
    inner: Mutex<T>,
}

/// A [`Heap`] behind a spin lock, usable from every CPU through `&self`.
pub type LockedHeap<'m> = Locked<Heap<'m>>;

/// A [`crate::Heaps`] pair behind one spin lock.
pub type LockedHeaps<'v, 'n> = Locked<crate::Heaps<'v, 'n>>;

impl<T> Locked<T> {
    /// Puts `value` behind the lock; `const`, so it can initialise a
    /// `static`.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        Self {
            inner: Mutex::new(value),
        }
    }

    /// Puts `value` behind the lock.
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        Self {
            inner: Mutex::new(value),
        }
    }

    /// Takes the lock, spinning until it is free.
    #[inline]
    pub fn lock(&self) -> impl DerefMut<Target = T> + '_ {
        #[cfg(not(loom))]
        let guard = self.inner.lock();
        #[cfg(loom)]
        let guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        Guard(guard)
    }

    /// The value, without the lock.
    pub fn into_inner(self) -> T {
        #[cfg(not(loom))]
        {
            self.inner.into_inner()
        }
        #[cfg(loom)]
        {
            match self.inner.into_inner() {
                Ok(value) => value,
                Err(poisoned) => poisoned.into_inner(),
            }
        }
    }
}

/// The lock guard, seen as the value itself.
struct Guard<G>(G);

impl<T, G: core::ops::Deref<Target = T>> core::ops::Deref for Guard<G> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T, G: DerefMut<Target = T>> DerefMut for Guard<G> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl Locked<Heap<'_>> {
    /// [`Heap::alloc`] under the lock.
    #[inline]
    pub fn alloc(&self, order: Order, constraints: Constraints) -> Result<Block, AllocError> {
        self.lock().alloc(order, constraints)
    }

    /// [`Heap::alloc_at_most`] under the lock.
    pub fn alloc_at_most(
        &self,
        order: Order,
        constraints: Constraints,
    ) -> Result<Block, AllocError> {
        self.lock().alloc_at_most(order, constraints)
    }

    /// [`Heap::free`] under the lock.
    #[inline]
    pub fn free(&self, pfn: Mfn, order: Order) -> Result<(), FreeError> {
        self.lock().free(pfn, order)
    }

    /// [`Heap::free_block`] under the lock.
    #[inline]
    pub fn free_block(&self, block: Block) -> Result<(), FreeError> {
        self.lock().free_block(block)
    }

    /// [`Heap::claim`] under the lock.
    pub fn claim(&self, pfn: Mfn, order: Order) -> Result<Block, ClaimError> {
        self.lock().claim(pfn, order)
    }

    /// [`Heap::kind_of`] under the lock.
    pub fn kind_of(&self, pfn: Mfn) -> Option<MemKind> {
        self.lock().kind_of(pfn)
    }

    /// Free frames, under the lock.
    pub fn free_frames(&self) -> u64 {
        self.lock().free_frames()
    }
}
