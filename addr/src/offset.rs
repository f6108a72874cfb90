//! Guest-to-host translation of linearly mapped blocks.
//!
//! Where a run of guest frames is backed by a run of machine frames, the
//! translation is one signed distance. [`FrameOffset`] is that distance as
//! a type of its own, so that crossing from one space to the other is a
//! visible, checked call instead of an addition that wraps.

use core::fmt;

use crate::{Gfn, GfnRange, GuestPhysAddr, HostPhysAddr, Mfn, MfnRange};

/// The distance from a guest frame to the machine frame backing it, for a
/// block mapped linearly (`mfn = gfn + offset`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameOffset(i64);

impl FrameOffset {
    /// The offset that maps `gfn` to `mfn`. Always representable: both
    /// frame numbers are below `2^40`.
    #[must_use]
    pub const fn between(gfn: Gfn, mfn: Mfn) -> Self {
        Self(mfn.get() as i64 - gfn.get() as i64)
    }

    /// The offset in frames (positive when machine frames lie higher).
    #[must_use]
    pub const fn frames(self) -> i64 {
        self.0
    }

    /// The machine frame backing `gfn`, if it exists.
    #[must_use]
    pub const fn to_host(self, gfn: Gfn) -> Option<Mfn> {
        match (gfn.get() as i64).checked_add(self.0) {
            Some(n) if n >= 0 => Mfn::new(n as u64),
            _ => None,
        }
    }

    /// The guest frame `mfn` backs, if it exists.
    #[must_use]
    pub const fn to_guest(self, mfn: Mfn) -> Option<Gfn> {
        match (mfn.get() as i64).checked_sub(self.0) {
            Some(n) if n >= 0 => Gfn::new(n as u64),
            _ => None,
        }
    }

    /// The host-physical address of guest byte `gpa` (same page offset).
    #[must_use]
    pub const fn to_host_addr(self, gpa: GuestPhysAddr) -> Option<HostPhysAddr> {
        match self.to_host(gpa.frame()) {
            Some(mfn) => mfn.addr().checked_add(gpa.page_offset()),
            None => None,
        }
    }

    /// The guest-physical address of host byte `hpa` (same page offset).
    #[must_use]
    pub const fn to_guest_addr(self, hpa: HostPhysAddr) -> Option<GuestPhysAddr> {
        match self.to_guest(hpa.frame()) {
            Some(gfn) => gfn.addr().checked_add(hpa.page_offset()),
            None => None,
        }
    }
}

impl fmt::Debug for FrameOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameOffset({:+#x})", self.0)
    }
}

/// A run of guest frames backed by a run of machine frames of the same
/// length: the unit of a physical-to-machine map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameMapping {
    guest: GfnRange,
    host: MfnRange,
}

impl FrameMapping {
    /// `frames` guest frames from `gfn` backed from `mfn`, if both runs
    /// end within their spaces.
    #[must_use]
    pub const fn new(gfn: Gfn, mfn: Mfn, frames: u64) -> Option<Self> {
        match (
            GfnRange::from_len(gfn, frames),
            MfnRange::from_len(mfn, frames),
        ) {
            (Some(guest), Some(host)) => Some(Self { guest, host }),
            _ => None,
        }
    }

    /// The first guest frame.
    #[must_use]
    pub const fn gfn(self) -> Gfn {
        self.guest.start()
    }

    /// The first machine frame.
    #[must_use]
    pub const fn mfn(self) -> Mfn {
        self.host.start()
    }

    /// The number of frames.
    #[must_use]
    pub const fn frames(self) -> u64 {
        self.guest.len()
    }

    /// The guest frames mapped.
    #[must_use]
    pub const fn guest(self) -> GfnRange {
        self.guest
    }

    /// The machine frames backing them.
    #[must_use]
    pub const fn host(self) -> MfnRange {
        self.host
    }

    /// The translation of the whole run.
    #[must_use]
    pub const fn offset(self) -> FrameOffset {
        FrameOffset::between(self.gfn(), self.mfn())
    }

    /// The machine frame backing `gfn`, if the run maps it.
    #[must_use]
    pub const fn translate(self, gfn: Gfn) -> Option<Mfn> {
        if self.guest.contains(gfn) {
            self.offset().to_host(gfn)
        } else {
            None
        }
    }

    /// The run cut after `frames` frames: the first part and the rest, if
    /// `frames` lies within `0..=self.frames()`.
    #[must_use]
    pub const fn split(self, frames: u64) -> Option<(Self, Self)> {
        if frames > self.frames() {
            return None;
        }
        let (Some(gfn_at), Some(mfn_at)) = (
            self.gfn().checked_add(frames),
            self.mfn().checked_add(frames),
        ) else {
            return None;
        };
        match (self.guest.split_at(gfn_at), self.host.split_at(mfn_at)) {
            (Some((g1, g2)), Some((h1, h2))) => Some((
                Self {
                    guest: g1,
                    host: h1,
                },
                Self {
                    guest: g2,
                    host: h2,
                },
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cross_spaces_both_ways() {
        let gfn = Gfn::new(0x100).expect("gfn");
        let mfn = Mfn::new(0x80).expect("mfn");
        let off = FrameOffset::between(gfn, mfn);
        assert_eq!(off.frames(), -0x80);
        assert_eq!(off.to_host(gfn), Some(mfn));
        assert_eq!(off.to_guest(mfn), Some(gfn));
        assert_eq!(off.to_host(Gfn::new(0x7f).expect("gfn")), None);
        assert_eq!(
            FrameOffset::between(Gfn::ZERO, Mfn::MAX).to_host(Gfn::new(1).expect("gfn")),
            None
        );
        let gpa = GuestPhysAddr::new(0x10_0123).expect("gpa");
        assert_eq!(off.to_host_addr(gpa).map(u64::from), Some(0x8_0123));
        let hpa = HostPhysAddr::new(0x8_0123).expect("hpa");
        assert_eq!(off.to_guest_addr(hpa), Some(gpa));
    }

    #[test]
    fn mappings_translate_only_their_run() {
        let m = FrameMapping::new(Gfn::new(10).expect("gfn"), Mfn::new(1000).expect("mfn"), 4)
            .expect("mapping");
        assert_eq!(m.translate(Gfn::new(13).expect("gfn")), Mfn::new(1003));
        assert_eq!(m.translate(Gfn::new(14).expect("gfn")), None);
        assert_eq!(m.guest().len(), 4);
        assert_eq!(m.host().start(), m.mfn());
        let (a, b) = m.split(1).expect("split");
        assert_eq!(
            (a.frames(), b.frames(), b.gfn().get(), b.mfn().get()),
            (1, 3, 11, 1001)
        );
        assert_eq!(m.split(5), None);
        assert_eq!(FrameMapping::new(Gfn::MAX, Mfn::ZERO, 2), None);
    }
}
