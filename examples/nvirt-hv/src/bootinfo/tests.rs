use super::*;
use crate::phys::SliceMemory;
use nvirt_e820::{Entry, Kind};

const BASE: u64 = 0x1_0000;

fn put(mem: &mut [u8], at: u64, bytes: &[u8]) {
    let at = (at - BASE) as usize;
    mem[at..at + bytes.len()].copy_from_slice(bytes);
}

fn tag(t: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&t.to_le_bytes());
    v.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    while v.len() % 8 != 0 {
        v.push(0);
    }
    v
}

fn sample_entries() -> Vec<Entry> {
    vec![
        // Unsorted and overlapping, as firmware may give them.
        Entry::new(0x10_0000, 0x800_0000, Kind::Ram).unwrap(),
        Entry::new(0, 0x9_fc00, Kind::Ram).unwrap(),
        Entry::new(0x9_fc00, 0xa_0000, Kind::Reserved).unwrap(),
        Entry::new(0x7fe_0000, 0x800_0000, Kind::Reserved).unwrap(),
    ]
}

fn multiboot2_image() -> Vec<u8> {
    let mut mbi = vec![0u8; 8];
    mbi.extend(tag(1, b"console=ttyS0 memmap=16M!64M\0"));
    let mut module = Vec::new();
    module.extend_from_slice(&0x20_0000u32.to_le_bytes());
    module.extend_from_slice(&0x20_1234u32.to_le_bytes());
    module.extend_from_slice(b"nvirt-guest\0");
    mbi.extend(tag(3, &module));
    let mut map = vec![0u8; nvirt_e820::multiboot2::tag_len(4)];
    let n = nvirt_e820::multiboot2::write(&sample_entries(), &mut map).unwrap();
    map.truncate(n);
    while map.len() % 8 != 0 {
        map.push(0);
    }
    mbi.extend(map);
    let mut rsdp = [0u8; 20];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    mbi.extend(tag(14, &rsdp));
    mbi.extend(tag(0, &[]));
    let total = mbi.len() as u32;
    mbi[..4].copy_from_slice(&total.to_le_bytes());
    mbi
}

#[test]
fn reads_multiboot2() {
    let mbi = multiboot2_image();
    let mut mem = vec![0u8; 0x1000];
    put(&mut mem, BASE + 0x100, &mbi);
    let boot = read(
        MULTIBOOT2_MAGIC,
        BASE + 0x100,
        &SliceMemory::new(BASE, &mem),
    )
    .unwrap();
    assert_eq!(boot.protocol, Protocol::Multiboot2);
    assert_eq!(boot.cmdline.as_str(), "console=ttyS0 memmap=16M!64M");
    let modules: Vec<_> = boot.modules().collect();
    assert_eq!(modules.len(), 1);
    assert_eq!(modules[0].range, 0x20_0000..0x20_1234);
    assert_eq!(modules[0].name.as_str(), "nvirt-guest");
    assert_eq!(boot.map.len(), 4, "sanitized: {:?}", boot.map);
    assert_eq!(boot.map.kind_at(0x7ff_0000), Some(Kind::Reserved));
    assert!(matches!(boot.rsdp, Some(RsdpHint::Copy { len: 20, .. })));
    let footprint = BASE + 0x100..BASE + 0x100 + mbi.len() as u64;
    assert_eq!(boot.footprint.ranges(), [footprint]);
}

#[test]
fn multiboot2_without_a_map_or_oversized_is_refused() {
    let mut mbi = vec![0u8; 8];
    mbi.extend(tag(1, b"x\0"));
    mbi.extend(tag(0, &[]));
    let total = mbi.len() as u32;
    mbi[..4].copy_from_slice(&total.to_le_bytes());
    let mem = SliceMemory::new(0, &mbi);
    assert_eq!(
        read(MULTIBOOT2_MAGIC, 0, &mem).err(),
        Some(BootError::NoMemoryMap)
    );
    let mut huge = mbi.clone();
    huge[..4].copy_from_slice(&(1u32 << 30).to_le_bytes());
    let mem = SliceMemory::new(0, &huge);
    assert!(matches!(
        read(MULTIBOOT2_MAGIC, 0, &mem),
        Err(BootError::TooLarge { .. })
    ));
    assert_eq!(
        read(0x1234, 0, &mem).err(),
        Some(BootError::UnknownMagic(0x1234))
    );
}

#[test]
fn reads_multiboot1_as_qemu_passes_it() {
    let mut mem = vec![0u8; 0x2000];
    let info = BASE;
    // flags: cmdline, mods, mmap.
    put(&mut mem, info, &(1u32 << 2 | 1 << 3 | 1 << 6).to_le_bytes());
    put(&mut mem, info + 16, &((BASE + 0x200) as u32).to_le_bytes());
    put(
        &mut mem,
        BASE + 0x200,
        b"/path/nvirt-hv guest_addr=0x3000000\0",
    );
    put(&mut mem, info + 20, &1u32.to_le_bytes());
    put(&mut mem, info + 24, &((BASE + 0x300) as u32).to_le_bytes());
    let mut module = Vec::new();
    module.extend_from_slice(&0x40_0000u32.to_le_bytes());
    module.extend_from_slice(&0x40_8000u32.to_le_bytes());
    module.extend_from_slice(&((BASE + 0x340) as u32).to_le_bytes());
    module.extend_from_slice(&0u32.to_le_bytes());
    put(&mut mem, BASE + 0x300, &module);
    put(&mut mem, BASE + 0x340, b"guest.bin\0");
    let mut map = [0u8; 96];
    let n = nvirt_e820::multiboot1::write(&sample_entries(), &mut map).unwrap();
    put(&mut mem, info + 44, &(n as u32).to_le_bytes());
    put(&mut mem, info + 48, &((BASE + 0x400) as u32).to_le_bytes());
    put(&mut mem, BASE + 0x400, &map[..n]);

    let boot = read(MULTIBOOT1_MAGIC, info, &SliceMemory::new(BASE, &mem)).unwrap();
    assert_eq!(boot.protocol, Protocol::Multiboot1);
    assert_eq!(boot.cmdline.as_str(), "/path/nvirt-hv guest_addr=0x3000000");
    let modules: Vec<_> = boot.modules().collect();
    assert_eq!(modules[0].range, 0x40_0000..0x40_8000);
    assert_eq!(modules[0].name.as_str(), "guest.bin");
    assert_eq!(boot.map.len(), 4);
    assert_eq!(boot.rsdp, None);
    // Info, command line, module list, module name and map are all reserved.
    for addr in [
        info,
        BASE + 0x200,
        BASE + 0x300,
        BASE + 0x340,
        BASE + 0x400 + n as u64 - 1,
    ] {
        assert!(boot.footprint.contains(addr), "{addr:#x}");
    }
    assert!(!boot.footprint.contains(BASE + 0x400 + n as u64));

    // An unterminated command line running off memory is an error.
    let mut broken = mem.clone();
    broken[0x200..0x2000].fill(b'x');
    assert!(read(MULTIBOOT1_MAGIC, info, &SliceMemory::new(BASE, &broken)).is_err());
    // No memory map flag.
    let mut nomap = mem;
    nomap[0] = 1 << 2;
    assert_eq!(
        read(MULTIBOOT1_MAGIC, info, &SliceMemory::new(BASE, &nomap)).err(),
        Some(BootError::NoMemoryMap)
    );
}

#[test]
fn reads_pvh_start_info() {
    let mut mem = vec![0u8; 0x1000];
    let info = BASE;
    put(&mut mem, info, &PVH_MAGIC.to_le_bytes());
    put(&mut mem, info + 4, &1u32.to_le_bytes());
    put(&mut mem, info + 12, &1u32.to_le_bytes());
    put(&mut mem, info + 16, &(BASE + 0x100).to_le_bytes());
    put(&mut mem, info + 24, &(BASE + 0x200).to_le_bytes());
    put(&mut mem, info + 32, &0xf_5a10u64.to_le_bytes());
    put(&mut mem, info + 40, &(BASE + 0x300).to_le_bytes());
    put(&mut mem, info + 48, &4u32.to_le_bytes());
    let mut module = Vec::new();
    module.extend_from_slice(&0x300_0000u64.to_le_bytes());
    module.extend_from_slice(&0x1000u64.to_le_bytes());
    module.extend_from_slice(&0u64.to_le_bytes());
    module.extend_from_slice(&0u64.to_le_bytes());
    put(&mut mem, BASE + 0x100, &module);
    put(&mut mem, BASE + 0x200, b"nv_type=12\0");
    let mut map = [0u8; 96];
    nvirt_e820::pvh::write(&sample_entries(), &mut map).unwrap();
    put(&mut mem, BASE + 0x300, &map);

    let boot = read(PVH_MAGIC, info, &SliceMemory::new(BASE, &mem)).unwrap();
    assert_eq!(boot.protocol, Protocol::Pvh);
    assert_eq!(boot.cmdline.as_str(), "nv_type=12");
    assert_eq!(boot.rsdp, Some(RsdpHint::Address(0xf_5a10)));
    assert_eq!(
        boot.modules().map(|m| m.range.clone()).collect::<Vec<_>>(),
        vec![0x300_0000..0x300_1000]
    );
    assert_eq!(boot.map.len(), 4);

    let mut bad = mem.clone();
    bad[0] ^= 1;
    assert!(matches!(
        read(PVH_MAGIC, info, &SliceMemory::new(BASE, &bad)),
        Err(BootError::BadPvhMagic(_))
    ));
    let mut v0 = mem;
    v0[4] = 0;
    assert_eq!(
        read(PVH_MAGIC, info, &SliceMemory::new(BASE, &v0)).err(),
        Some(BootError::NoMemoryMap)
    );
}

#[test]
fn module_words_after_a_word_anywhere_in_the_string() {
    let module = |s: &str| Module {
        range: 0..1,
        name: FixedString::from_bytes(s.as_bytes()).unwrap(),
    };
    let qemu = module("/tmp/kernel.bin linux console=ttyS0 quiet");
    let after: Vec<&str> = qemu.words_after("linux").unwrap().collect();
    assert_eq!(after, ["console=ttyS0", "quiet"]);
    let grub = module("vmcfg alpha");
    assert_eq!(grub.words_after("vmcfg").unwrap().next(), Some("alpha"));
    assert_eq!(module("initrd").words_after("initrd").unwrap().count(), 0);
    // A word that merely contains the one asked for does not count.
    assert!(module("/boot/initrd.img").words_after("initrd").is_none());
    assert!(module("").words_after("linux").is_none());
}
