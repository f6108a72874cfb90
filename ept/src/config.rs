//! Construction-time choices and the invalidation verdict of every change.

use core::fmt;

/// When uniform ranges are merged back into large pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Merge {
    /// Every change merges what it made uniform: the tables always hold the
    /// fewest entries for their mappings.
    #[default]
    Eager,
    /// Only [`promote`](crate::Tables::promote) merges; for callers that
    /// want split pages to stay split (dirty logging write-protects 4 KiB
    /// pages one by one and must not see them merged back).
    Explicit,
}

/// How a set of tables is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    phys_bits: u8,
    pages_1g: bool,
    merge: Merge,
    shared: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// 52-bit physical addresses, no 1 GiB pages (not every processor has
    /// them: enable them with [`pages_1g`](Self::pages_1g)), eager merging,
    /// tables used by one context.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            phys_bits: 52,
            pages_1g: false,
            merge: Merge::Eager,
            shared: false,
        }
    }

    /// The processor's physical-address width (CPUID 8000_0008h, EAX bits 7:0):
    /// host addresses at or beyond 2^bits are rejected, both mapped pages
    /// and table frames. 32..=52.
    #[must_use]
    pub const fn phys_bits(mut self, bits: u8) -> Self {
        self.phys_bits = bits;
        self
    }

    /// Whether the processor supports 1 GiB pages in these tables (EPT:
    /// IA32_VMX_EPT_VPID_CAP bit 17; NPT: CPUID 8000_0001h EDX bit 26).
    #[must_use]
    pub const fn pages_1g(mut self, on: bool) -> Self {
        self.pages_1g = on;
        self
    }

    /// The merge policy.
    #[must_use]
    pub const fn merge(mut self, merge: Merge) -> Self {
        self.merge = merge;
        self
    }

    /// Whether the tables are installed in contexts that one
    /// context-wide invalidation does not reach (for example one nCR3 under
    /// several ASIDs on a processor without flush-by-ASID). Changes then ask
    /// for [`Invalidate::AllContexts`] instead of
    /// [`Invalidate::ThisContext`].
    #[must_use]
    pub const fn shared(mut self, on: bool) -> Self {
        self.shared = on;
        self
    }

    /// The configured physical-address width.
    #[must_use]
    pub const fn physical_bits(&self) -> u8 {
        self.phys_bits
    }

    /// Whether 1 GiB pages are used.
    #[must_use]
    pub const fn uses_1g(&self) -> bool {
        self.pages_1g
    }

    /// The merge policy.
    #[must_use]
    pub const fn merge_policy(&self) -> Merge {
        self.merge
    }

    /// Whether the tables are shared between contexts.
    #[must_use]
    pub const fn is_shared(&self) -> bool {
        self.shared
    }

    pub(crate) const fn changed_scope(&self) -> Invalidate {
        if self.shared {
            Invalidate::AllContexts
        } else {
            Invalidate::ThisContext
        }
    }
}

/// What the caller must invalidate after a change before relying on it,
/// and before calling [`Tables::reclaim`](crate::Tables::reclaim).
///
/// Processors cache only present translations and paging-structure entries
/// (SDM Vol. 3C, 29.4.1; AMD APM Vol. 2, 15.16), so a change that only
/// filled not-present entries needs nothing. Anything that changed or
/// removed a present entry — including splitting or merging a large page
/// with the same translation, which Intel requires to be followed by an
/// invalidation (SDM Vol. 3A, 4.10.2.3) — needs the cached translations of
/// the contexts using these tables dropped: INVEPT single-context with this
/// EPTP, or a flush of the guest's ASID (VMCB TLB_CONTROL).
#[must_use = "stale translations stay cached until the caller invalidates them"]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invalidate {
    /// Nothing is cached that the change made stale.
    #[default]
    Nothing,
    /// Invalidate the contexts that use these tables.
    ThisContext,
    /// Invalidate every context (global INVEPT / flush all ASIDs).
    AllContexts,
}

impl Invalidate {
    /// The stronger of two verdicts, for a caller batching changes.
    pub fn and(self, other: Self) -> Self {
        self.max(other)
    }

    /// Whether anything must be invalidated.
    #[must_use]
    pub fn is_needed(self) -> bool {
        self != Self::Nothing
    }
}

impl fmt::Display for Invalidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nothing => "nothing",
            Self::ThisContext => "this context",
            Self::AllContexts => "all contexts",
        })
    }
}
