//! Helpers shared by the fuzz targets.

use nvirt_e820::{FirmwareEntry, MapError, MemoryMap};

/// Capacity of the maps the fuzz targets build.
pub const CAPACITY: usize = 512;

/// Sanitizes parsed firmware entries and checks the map's invariants; a
/// capacity or range error is a fine answer, a broken map is a bug.
pub fn sanitize_and_check(entries: impl IntoIterator<Item = FirmwareEntry>) -> Option<MemoryMap<CAPACITY>> {
    match MemoryMap::<CAPACITY>::from_firmware(entries) {
        Ok(map) => {
            check(&map);
            Some(map)
        }
        Err(MapError::Capacity(_) | MapError::Range { .. }) => None,
    }
}

/// Panics if a map breaks an invariant.
pub fn check<const N: usize>(map: &MemoryMap<N>) {
    if let Err(e) = nvirt_e820::model::check_invariants(map) {
        panic!("invariant broken: {e}\n{map}");
    }
}
