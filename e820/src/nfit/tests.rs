use super::*;
use crate::entry::Entry;
use crate::kind::Kind;
use crate::map::MemoryMap;

fn pmem(index: u16, base: u64, length: u64) -> SpaRange {
    SpaRange {
        index,
        flags: SpaFlags::PROXIMITY_VALID,
        proximity_domain: Some(0),
        range_type: SpaType::Persistent,
        base,
        length,
        mapping_attributes: 0x8008,
        location_cookie: None,
    }
}

fn build(ranges: &[SpaRange]) -> Vec<u8> {
    let mut b = NfitBuilder::<4>::new();
    for r in ranges {
        assert!(b.spa_range(*r));
    }
    let mut out = vec![0; b.len()];
    assert_eq!(b.write(&mut out), Some(out.len()));
    out
}

#[test]
fn guid_text_matches_the_specification() {
    assert_eq!(
        SpaType::Persistent.guid().to_string(),
        "66F0D379-B4F3-4074-AC43-0D3318B78CDB"
    );
    assert_eq!(
        SpaType::Persistent.guid().0[..4],
        [0x79, 0xd3, 0xf0, 0x66],
        "first field little-endian"
    );
    for (guid, kind) in SpaType::KNOWN {
        assert_eq!(SpaType::from_guid(guid), kind);
        assert_eq!(kind.guid(), guid);
    }
}

#[test]
fn round_trips_and_adds_pmem_to_a_map() {
    let mut volatile = pmem(2, 0x2_0000_0000, 1 << 30);
    volatile.range_type = SpaType::Volatile;
    let mut cookie = pmem(3, 0x3_0000_0000, 1 << 30);
    cookie.flags |= SpaFlags::LOCATION_COOKIE_VALID;
    cookie.location_cookie = Some(0x1_0030_0001);
    let table = build(&[pmem(1, 0x1_0000_0000, 64 << 20), volatile, cookie]);
    let nfit = Nfit::parse(&table).unwrap();
    let ranges: Vec<_> = nfit.spa_ranges().collect();
    assert_eq!(ranges, [pmem(1, 0x1_0000_0000, 64 << 20), volatile, cookie]);
    assert_eq!(nfit.pmem_ranges().count(), 2);

    let mut map =
        MemoryMap::<8>::from_entries([Entry::new(0, 0x8000_0000, Kind::Ram).unwrap()]).unwrap();
    assert_eq!(nfit.add_pmem_to(&mut map).unwrap(), 2);
    assert_eq!(map.kind_at(0x1_0000_0000), Some(Kind::Pmem));
    assert_eq!(map.total_nonvolatile(), (64 << 20) + (1 << 30));
}

#[test]
fn rejects_damaged_tables() {
    let good = build(&[pmem(1, 0x1_0000_0000, 64 << 20)]);
    assert!(Nfit::parse(&good).is_ok());

    let mut bad = good.clone();
    bad[50] ^= 1;
    assert!(matches!(Nfit::parse(&bad), Err(NfitError::Checksum { .. })));

    assert!(matches!(
        Nfit::parse(&good[..good.len() - 1]),
        Err(NfitError::Truncated { .. })
    ));
    assert!(matches!(
        Nfit::parse(&good[..10]),
        Err(NfitError::Truncated { .. })
    ));

    let mut sig = good.clone();
    sig[0] = b'X';
    assert!(matches!(Nfit::parse(&sig), Err(NfitError::Signature(_))));

    // A sub-structure length of 0 would loop forever if trusted.
    let mut zero = good.clone();
    zero[42] = 0;
    zero[43] = 0;
    zero[9] = zero[9].wrapping_add(56);
    assert!(matches!(
        Nfit::parse(&zero),
        Err(NfitError::BadStructure {
            offset: 40,
            length: 0,
            ..
        })
    ));

    // An SPA structure too short for its fields.
    let mut short = good[..STRUCTURES_OFFSET + 8].to_vec();
    short[4..8].copy_from_slice(&48u32.to_le_bytes());
    short[42..44].copy_from_slice(&8u16.to_le_bytes());
    let sum = short.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    short[9] = short[9].wrapping_sub(sum);
    assert!(matches!(
        Nfit::parse(&short),
        Err(NfitError::BadStructure { .. })
    ));

    // Trailing bytes beyond the header's length are ignored.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0xff; 7]);
    assert_eq!(Nfit::parse(&longer).unwrap().pmem_ranges().count(), 1);
}
