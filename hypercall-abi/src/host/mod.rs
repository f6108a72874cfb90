//! The hypervisor's side: decode a guest's `memory_op` from its registers
//! and memory into a typed, validated [`Request`], and turn the work done
//! into an [`Outcome`] for the guest's registers.
//!
//! A handler is small:
//!
//! ```
//! use nvirt_hypercall_abi::host::{self, Caller, GuestMemory, Limits, Outcome, Registers, Request, Resume};
//! use nvirt_hypercall_abi::{E820Entry, Errno, MemKind};
//!
//! fn on_hypercall<M: GuestMemory>(regs: &mut Registers, caller: &Caller, mem: &mut M, limits: &Limits) -> Resume {
//!     let outcome = match host::decode(regs, caller, mem, limits) {
//!         Err(refused) => refused.outcome(),
//!         Ok(Request::Reservation(r)) => r.run(mem, |extent| {
//!             // Allocate, map and account extent.gfn() of r.order() from
//!             // the RAM pool or, for MemKind::NonVolatile, the NVRAM pool.
//!             let _ = (r.op(), r.kind() == MemKind::NonVolatile, extent.gfn());
//!             Err(Errno::NoMem)
//!         }),
//!         Ok(Request::MemoryMap(m)) => m.respond(mem, &[E820Entry::new(0, 0xa0000, E820Entry::RAM)]),
//!         Ok(Request::CurrentReservation) => Outcome::Success(0),
//!         Ok(_) => Outcome::Error(Errno::NoSys),
//!     };
//!     outcome.apply(regs)
//! }
//! ```

mod context;
mod decode;
mod extent;
mod linear;
mod map;
mod memory;
mod outcome;
mod reservation;
mod walk;

pub use context::{Caller, Limits, Registers, UserCalls, VcpuMode};
pub use decode::{Request, decode};
pub use extent::{ExtentError, ExtentRequest, ReservationOp};
pub use linear::Linear;
pub use map::{MapRequest, SetMapRequest};
pub use memory::{Access, AccessError, FlatMemory, GuestMemory};
pub use outcome::{Fault, Field, Outcome, Reason, Rejection, Resume};
pub use reservation::Reservation;
pub use walk::{Paging, PagingMode, Translation, WalkError, translate};
