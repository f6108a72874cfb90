//! memory_map, machine_memory_map and set_memory_map: E820 maps between the
//! hypervisor and the guest.

use zerocopy::IntoBytes;

use crate::errno::Errno;
use crate::host::context::{Caller, Limits};
use crate::host::decode::resolve_domain;
use crate::host::memory::{Access, AccessError, GuestMemory, read_value};
use crate::host::outcome::{Field, Outcome, Reason, Rejection};
use crate::layout::{
    CompatForeignMemoryMap, CompatMemoryMap, E820_ENTRY_SIZE, E820Entry, ForeignMemoryMap,
    MemoryMap,
};
use crate::numbers::Command;
use crate::types::GuestAddr;

/// A validated memory_map or machine_memory_map call: where to write up to
/// [`MapRequest::capacity`] entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    command: Command,
    arg: GuestAddr,
    buffer: GuestAddr,
    asked: u32,
    capacity: u32,
}

impl MapRequest {
    pub(crate) fn decode<M: GuestMemory + ?Sized>(
        command: Command,
        arg: GuestAddr,
        caller: &Caller,
        mem: &M,
        limits: &Limits,
    ) -> Result<Self, Rejection> {
        if command == Command::MachineMemoryMap && !caller.is_privileged() {
            return Err(Rejection::new(Reason::NotPrivileged { command }));
        }
        let argument = |error| {
            Rejection::new(Reason::Memory {
                field: Field::Argument,
                error,
            })
        };
        let map = read_map(mem, arg, caller).map_err(argument)?;
        // Neither the buffer nor the count's write-back is checked up
        // front: as Xen does for HVM guests, [`MapRequest::respond`]
        // answers -EFAULT when a copy fails.
        let asked = map.nr_entries();
        let capacity = asked.min(limits.map_entry_limit());
        Ok(Self {
            command,
            arg,
            buffer: map.buffer(),
            asked,
            capacity,
        })
    }

    /// `XENMEM_memory_map` or `XENMEM_machine_memory_map`.
    #[must_use]
    pub const fn command(&self) -> Command {
        self.command
    }

    /// The entries that will be written at most: what the guest has room
    /// for, capped by the hypervisor's limit.
    #[must_use]
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Writes `entries` to the guest and answers.
    ///
    /// memory_map truncates to the guest's room, as Xen does; the guest
    /// reads how many it got from `nr_entries`. machine_memory_map with a
    /// null buffer only reports how many entries there are (Xen's size
    /// query); with a buffer it refuses with `-EINVAL` if the map does not
    /// fit, as Xen does. A guest address that cannot be written gives
    /// `-EFAULT` (entries before it may have been written, as in Xen).
    pub fn respond<M: GuestMemory + ?Sized>(&self, mem: &mut M, entries: &[E820Entry]) -> Outcome {
        let count_at = self.arg.checked_add(MemoryMap::NR_ENTRIES_OFFSET);
        if self.command == Command::MachineMemoryMap && self.buffer.is_null() {
            let n = u32::try_from(entries.len()).unwrap_or(u32::MAX);
            return match count_at.map(|at| mem.write(at, &n.to_le_bytes())) {
                Some(Ok(())) => Outcome::Success(0),
                _ => Outcome::Error(Errno::Fault),
            };
        }
        let fits = u32::try_from(entries.len()).is_ok_and(|n| n <= self.capacity);
        if self.command == Command::MachineMemoryMap && !fits {
            return Outcome::Error(Errno::Inval);
        }
        let mut written: u32 = 0;
        for entry in entries.iter().take(self.capacity as usize) {
            let Some(at) = self.buffer.element(u64::from(written), E820_ENTRY_SIZE) else {
                return Outcome::Error(Errno::Fault);
            };
            if mem.write(at, entry.as_bytes()).is_err() {
                return Outcome::Error(Errno::Fault);
            }
            written += 1;
        }
        let Some(count_at) = count_at else {
            return Outcome::Error(Errno::Fault);
        };
        match mem.write(count_at, &written.to_le_bytes()) {
            Ok(()) => Outcome::Success(0),
            Err(_) => Outcome::Error(Errno::Fault),
        }
    }

    /// The guest's own idea of its buffer's size, before the cap.
    #[must_use]
    pub const fn asked(&self) -> u32 {
        self.asked
    }
}

/// A validated set_memory_map call: `count` entries at `buffer`, for the
/// caller's own domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetMapRequest {
    buffer: GuestAddr,
    count: u32,
}

impl SetMapRequest {
    pub(crate) fn decode<M: GuestMemory + ?Sized>(
        arg: GuestAddr,
        caller: &Caller,
        mem: &M,
        limits: &Limits,
    ) -> Result<Self, Rejection> {
        // Xen's order: the argument, the count against E820MAX, the domain
        // (XSM_TARGET: a domain may set its own map), then the buffer.
        let argument = |error| {
            Rejection::new(Reason::Memory {
                field: Field::Argument,
                error,
            })
        };
        let fmap = if caller.is_compat() {
            read_value::<CompatForeignMemoryMap, _>(mem, arg)
                .map_err(argument)?
                .widen()
        } else {
            read_value::<ForeignMemoryMap, _>(mem, arg).map_err(argument)?
        };
        let map = fmap.map();
        let count = map.nr_entries();
        if count > limits.map_entry_limit() {
            return Err(Rejection::new(Reason::TooManyMapEntries {
                nr_entries: count,
                max: limits.map_entry_limit(),
            }));
        }
        resolve_domain(fmap.domid(), caller).map_err(Rejection::new)?;
        check_buffer(mem, map.buffer(), count, Access::Read).map_err(Rejection::new)?;
        Ok(Self {
            buffer: map.buffer(),
            count,
        })
    }

    /// Entries the guest passed.
    #[must_use]
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// Copies the entries into `out` and returns how many there are.
    /// `out` needs room for [`SetMapRequest::count`] entries (the
    /// hypervisor's map-entry limit always suffices). The entries are as the
    /// guest wrote them: sort and sanitize them before use.
    pub fn read_entries<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        out: &mut [E820Entry],
    ) -> Result<usize, Rejection> {
        let count = self.count as usize;
        let Some(out) = out.get_mut(..count) else {
            return Err(Rejection::new(Reason::TooManyMapEntries {
                nr_entries: self.count,
                max: u32::try_from(out.len()).unwrap_or(u32::MAX),
            }));
        };
        for (i, slot) in (0u64..).zip(out.iter_mut()) {
            let Some(at) = self.buffer.element(i, E820_ENTRY_SIZE) else {
                return Err(Rejection::new(Reason::ArrayOverflow {
                    field: Field::MapBuffer,
                    addr: self.buffer,
                    count: u64::from(self.count),
                }));
            };
            *slot = read_value(mem, at).map_err(|error| {
                Rejection::new(Reason::Memory {
                    field: Field::MapBuffer,
                    error,
                })
            })?;
        }
        Ok(count)
    }
}

/// The map argument at `arg`, in the caller's layout, widened.
fn read_map<M: GuestMemory + ?Sized>(
    mem: &M,
    arg: GuestAddr,
    caller: &Caller,
) -> Result<MemoryMap, AccessError> {
    if caller.is_compat() {
        Ok(read_value::<CompatMemoryMap, _>(mem, arg)?.widen())
    } else {
        read_value(mem, arg)
    }
}

/// Checks that `count` E820 entries at `buffer` lie in guest memory with
/// `access`.
fn check_buffer<M: GuestMemory + ?Sized>(
    mem: &M,
    buffer: GuestAddr,
    count: u32,
    access: Access,
) -> Result<(), Reason> {
    // Xen copies zero entries without touching the handle.
    if count == 0 {
        return Ok(());
    }
    let overflow = Reason::ArrayOverflow {
        field: Field::MapBuffer,
        addr: buffer,
        count: u64::from(count),
    };
    let end = buffer
        .element(u64::from(count), E820_ENTRY_SIZE)
        .ok_or(overflow)?;
    mem.check(buffer, end.raw() - buffer.raw(), access)
        .map_err(|error| Reason::Memory {
            field: Field::MapBuffer,
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::context::Registers;
    use crate::host::decode::{Request, decode};
    use crate::host::memory::FlatMemory;
    use crate::types::{DomId, XenPfn};

    const ME: DomId = DomId::new(2);
    const ARG: u64 = 0x40;
    const BUF: u64 = 0x100;

    fn limits() -> Limits {
        Limits::new(XenPfn::new(1 << 20)).max_map_entries(8)
    }

    fn call(mem: &FlatMemory<'_>, cmd: u64, caller: &Caller) -> Result<Request, Rejection> {
        let regs = Registers {
            rax: 12,
            rdi: cmd,
            rsi: ARG,
            ..Registers::default()
        };
        decode(&regs, caller, mem, &limits())
    }

    fn entries(n: u64) -> impl Iterator<Item = E820Entry> {
        (0..n).map(|i| E820Entry::new(i << 20, 1 << 20, 1 + (i as u32 % 2)))
    }

    fn written(mem: &FlatMemory<'_>) -> (u32, [E820Entry; 8]) {
        let map: MemoryMap = read_value(mem, GuestAddr::new(ARG)).unwrap();
        let mut out = [E820Entry::default(); 8];
        for (i, e) in (0u64..).zip(out.iter_mut()) {
            *e = read_value(mem, GuestAddr::new(BUF + 20 * i)).unwrap();
        }
        (map.nr_entries(), out)
    }

    #[test]
    fn memory_map_truncates_to_the_guests_room() {
        let mut b = [0u8; 0x400];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut b);
        mem.write(
            GuestAddr::new(ARG),
            MemoryMap::new(3, GuestAddr::new(BUF)).as_bytes(),
        )
        .unwrap();
        let kernel = Caller::kernel(ME).unwrap();
        let Ok(Request::MemoryMap(m)) = call(&mem, 9, &kernel) else {
            panic!()
        };
        assert_eq!(
            (m.command(), m.asked(), m.capacity()),
            (Command::MemoryMap, 3, 3)
        );
        let five: Vec<_> = entries(5).collect();
        assert_eq!(m.respond(&mut mem, &five), Outcome::Success(0));
        let (n, got) = written(&mem);
        assert_eq!(n, 3);
        assert_eq!(got[..3], five[..3]);
        assert_eq!(got[3], E820Entry::default(), "nothing past the room");
        assert_eq!(m.respond(&mut mem, &five[..1]), Outcome::Success(0));
        assert_eq!(written(&mem).0, 1);
    }

    #[test]
    fn an_empty_buffer_is_never_looked_at() {
        let mut b = [0u8; 0x400];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut b);
        mem.write(
            GuestAddr::new(ARG),
            MemoryMap::new(0, GuestAddr::new(0xdead_0000)).as_bytes(),
        )
        .unwrap();
        let kernel = Caller::kernel(ME).unwrap();
        let Ok(Request::MemoryMap(m)) = call(&mem, 9, &kernel) else {
            panic!("an empty map request is decoded, as Xen does")
        };
        let five: Vec<_> = entries(5).collect();
        assert_eq!(m.respond(&mut mem, &five), Outcome::Success(0));
        assert_eq!(written(&mem).0, 0);
    }

    #[test]
    fn capacity_is_capped_and_checked() {
        let mut b = [0u8; 0x400];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut b).with_read_only(0x3f0..0x400);
        let kernel = Caller::kernel(ME).unwrap();
        // The guest claims room for 2^32 - 1 entries: only 8 are checked and written.
        mem.write(
            GuestAddr::new(ARG),
            MemoryMap::new(u32::MAX, GuestAddr::new(BUF)).as_bytes(),
        )
        .unwrap();
        let Ok(Request::MemoryMap(m)) = call(&mem, 9, &kernel) else {
            panic!()
        };
        assert_eq!(m.capacity(), 8);
        let ten: Vec<_> = entries(10).collect();
        assert_eq!(m.respond(&mut mem, &ten), Outcome::Success(0));
        assert_eq!(written(&mem), (8, ten[..8].try_into().unwrap()));
        // A buffer running into read-only memory is -EFAULT when the copy
        // reaches it, as in Xen (no up-front check for HVM guests): the
        // entries before it are written, the count is not.
        mem.write(
            GuestAddr::new(ARG),
            MemoryMap::new(8, GuestAddr::new(0x3c0)).as_bytes(),
        )
        .unwrap();
        let Ok(Request::MemoryMap(m)) = call(&mem, 9, &kernel) else {
            panic!()
        };
        assert_eq!(m.respond(&mut mem, &ten), Outcome::Error(Errno::Fault));
        for (i, e) in ten[..2].iter().enumerate() {
            let got: E820Entry = read_value(&mem, GuestAddr::new(0x3c0 + 20 * i as u64)).unwrap();
            assert_eq!(got, *e, "entry {i}, before the read-only bytes");
        }
        assert_eq!(written(&mem).0, 8, "the count is the earlier call's");
        mem.write(
            GuestAddr::new(ARG),
            MemoryMap::new(1, GuestAddr::new(u64::MAX - 3)).as_bytes(),
        )
        .unwrap();
        let Ok(Request::MemoryMap(m)) = call(&mem, 9, &kernel) else {
            panic!()
        };
        assert_eq!(m.respond(&mut mem, &ten), Outcome::Error(Errno::Fault));
        // An argument whose count field cannot be written back.
        let mut c = [0u8; 0x400];
        let mut ro = FlatMemory::new(GuestAddr::new(0), &mut c).with_read_only(ARG..ARG + 4);
        ro.write(GuestAddr::new(ARG + 8), &BUF.to_le_bytes())
            .unwrap();
        let Ok(Request::MemoryMap(m)) = call(&ro, 9, &kernel) else {
            panic!()
        };
        assert_eq!(m.respond(&mut ro, &ten), Outcome::Error(Errno::Fault));
    }

    #[test]
    fn machine_map_is_privileged_and_never_truncated() {
        let mut b = [0u8; 0x400];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut b);
        mem.write(
            GuestAddr::new(ARG),
            MemoryMap::new(4, GuestAddr::new(BUF)).as_bytes(),
        )
        .unwrap();
        let kernel = Caller::kernel(ME).unwrap();
        assert_eq!(
            call(&mem, 10, &kernel).unwrap_err().reason(),
            &Reason::NotPrivileged {
                command: Command::MachineMemoryMap
            }
        );
        let Ok(Request::MachineMemoryMap(m)) = call(&mem, 10, &kernel.privileged()) else {
            panic!()
        };
        let five: Vec<_> = entries(5).collect();
        assert_eq!(m.respond(&mut mem, &five), Outcome::Error(Errno::Inval));
        assert_eq!(m.respond(&mut mem, &five[..4]), Outcome::Success(0));
        assert_eq!(written(&mem).0, 4);
        // A null buffer asks how many entries there are (whatever room it
        // claims), and nothing else is written.
        mem.write(
            GuestAddr::new(ARG),
            MemoryMap::new(0, GuestAddr::NULL).as_bytes(),
        )
        .unwrap();
        let before = mem.bytes().to_vec();
        let Ok(Request::MachineMemoryMap(m)) = call(&mem, 10, &kernel.privileged()) else {
            panic!()
        };
        assert_eq!(m.respond(&mut mem, &five), Outcome::Success(0));
        assert_eq!(written(&mem).0, 5);
        let changed = mem
            .bytes()
            .iter()
            .zip(&before)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, 1, "only the count's low byte");
    }

    #[test]
    fn set_memory_map_reads_the_guests_entries() {
        let mut b = [0u8; 0x400];
        let mut mem = FlatMemory::new(GuestAddr::new(0), &mut b);
        let three: Vec<_> = entries(3).collect();
        for (i, e) in (0u64..).zip(&three) {
            mem.write(GuestAddr::new(BUF + 20 * i), e.as_bytes())
                .unwrap();
        }
        let fmap = |domid, n| ForeignMemoryMap::new(domid, MemoryMap::new(n, GuestAddr::new(BUF)));
        mem.write(GuestAddr::new(ARG), fmap(DomId::SELF, 3).as_bytes())
            .unwrap();
        let kernel = Caller::kernel(ME).unwrap();
        // XSM_TARGET: a domain may set its own map without privilege.
        let Ok(Request::SetMemoryMap(s)) = call(&mem, 13, &kernel) else {
            panic!()
        };
        assert_eq!(s.count(), 3);
        let mut out = [E820Entry::default(); 8];
        assert_eq!(s.read_entries(&mem, &mut out), Ok(3));
        assert_eq!(out[..3], three[..]);
        assert_eq!(
            s.read_entries(&mem, &mut out[..2]).unwrap_err().errno(),
            Errno::Inval
        );

        mem.write(GuestAddr::new(ARG), fmap(DomId::new(5), 3).as_bytes())
            .unwrap();
        assert_eq!(
            call(&mem, 13, &kernel.privileged()).unwrap_err().errno(),
            Errno::Perm
        );
        mem.write(GuestAddr::new(ARG), fmap(ME, 9).as_bytes())
            .unwrap();
        assert_eq!(
            call(&mem, 13, &kernel.privileged()).unwrap_err().reason(),
            &Reason::TooManyMapEntries {
                nr_entries: 9,
                max: 8
            }
        );
        // Xen's order: the count is refused before the domain is looked at.
        mem.write(GuestAddr::new(ARG), fmap(DomId::new(5), 9).as_bytes())
            .unwrap();
        assert_eq!(call(&mem, 13, &kernel).unwrap_err().errno(), Errno::Inval);
        mem.write(
            GuestAddr::new(ARG),
            ForeignMemoryMap::new(ME, MemoryMap::new(8, GuestAddr::new(0x3f0))).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            call(&mem, 13, &kernel.privileged()).unwrap_err().errno(),
            Errno::Fault
        );
    }
}
