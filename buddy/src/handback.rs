//! Handing a reservation back: a block the heap allocated whole, of which a
//! front end (see [`crate::percpu`]) gave out single frames, becomes single
//! allocated frames, and the frames the front end still holds free are
//! freed and merged. The frames given out can then be freed to the heap one
//! by one, each checked as any free is.

use crate::heap::Heap;

impl Heap<'_> {
    /// Turns the allocated in-span block of order `k` at `p` into 2^k
    /// allocated frames, then frees frame `p + i` for every bit `i` set in
    /// `free` (bit `i % 64` of word `i / 64`), merging as a free would.
    /// A block whose every frame is in `free` is simply freed.
    pub(crate) fn hand_back(&mut self, p: u64, k: usize, free: &[u64]) {
        self.merge_deferred();
        let frames = 1u64 << k;
        let is_free = |i: u64| {
            free.get((i / 64) as usize)
                .is_some_and(|w| (w >> (i % 64)) & 1 != 0)
        };
        if (0..frames).all(is_free) {
            self.put_merge(p, k);
            return;
        }
        // Every frame after the head was interior; turning them into heads
        // front to back keeps order 0's bitmap unchanged, as no frame of the
        // block is a free start yet.
        {
            let mut v = self.bits.view();
            for f in p + 1..p + frames {
                v.set_head_quiet(f);
            }
        }
        // Now a valid heap of single allocated frames: free the ones the
        // front end held, as frees of one frame would.
        for i in (0..frames).filter(|&i| is_free(i)) {
            self.put_merge(p + i, 0);
        }
    }
}
