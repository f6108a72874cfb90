//! Real firmware maps, copied from public boot logs (each file under
//! `tests/data/real/` names its source on its `# source:` line): laptops,
//! desktops, servers, virtual machines, and machines whose persistent memory
//! comes from `memmap=nn!ss` (shown as type 12).
//!
//! Linux prints its `BIOS-e820:` lines after sanitizing, so each printed map
//! must be a fixed point of our sanitize; the same map scrambled (shuffled,
//! split, duplicated, with lower-priority overlaps) must sanitize back to it;
//! and where a log also shows the `user:` map that `memmap=`/`mem=` produced,
//! applying the same option must reproduce that map exactly.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::fs;
use std::path::{Path, PathBuf};

use nvirt_e820::{Entry, Kind, MemoryMap, text};

type Map = MemoryMap<3200>;

struct Fixture {
    name: String,
    entries: Vec<Entry>,
    cmdline: Option<String>,
    user: Option<Vec<Entry>>,
}

fn parse_file(path: &Path) -> (Vec<Entry>, Vec<(String, String)>) {
    let text = fs::read_to_string(path).unwrap();
    let mut headers = Vec::new();
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(header) = line.strip_prefix("# ") {
            if let Some((key, value)) = header.split_once(": ") {
                headers.push((key.to_owned(), value.to_owned()));
            }
            continue;
        }
        // Mail quoting in a few sources.
        let line = line.trim_start_matches('>');
        match text::parse_line(line) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(e) => panic!("{}:{}: {e}: {line}", path.display(), n + 1),
        }
    }
    (entries, headers)
}

fn fixtures() -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "txt") && !p.to_string_lossy().ends_with(".user.txt")
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let (entries, headers) = parse_file(&path);
            let header = |key: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            assert!(
                header("source").is_some(),
                "{} cites no source",
                path.display()
            );
            let user_path = path.with_extension("user.txt");
            let user = user_path.exists().then(|| parse_file(&user_path).0);
            Fixture {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                entries,
                cmdline: header("apply").or_else(|| header("cmdline")),
                user,
            }
        })
        .collect()
}

#[test]
fn there_are_at_least_fifteen_real_maps_of_every_sort() {
    let all = fixtures();
    assert!(all.len() >= 15, "only {} real maps", all.len());
    for needle in [
        "thinkpad",
        "poweredge",
        "qemu",
        "xen",
        "hyperv",
        "vmware",
        "virtualbox",
        "memmap",
    ] {
        assert!(
            all.iter().any(|f| f.name.contains(needle)),
            "no {needle} map"
        );
    }
}

#[test]
fn printed_maps_are_fixed_points_of_sanitize() {
    for f in fixtures() {
        let map = Map::from_entries(f.entries.iter().copied()).unwrap();
        assert_eq!(map.entries(), f.entries.as_slice(), "{}", f.name);
        // And the text round-trips.
        let reparsed: Vec<Entry> = map
            .to_string()
            .lines()
            .map(|l| text::parse_line(l).unwrap().unwrap())
            .collect();
        assert_eq!(reparsed, f.entries, "{}", f.name);
    }
}

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn scrambled_maps_sanitize_back_to_the_printed_map() {
    for (i, f) in fixtures().into_iter().enumerate() {
        for round in 0..20u64 {
            let mut rng = Rng(0x5eed ^ (i as u64) << 8 ^ round);
            let mut scrambled = Vec::new();
            for e in &f.entries {
                // Split mergeable entries at a random inner point.
                if !e.kind().never_merges() && e.size() > 1 && rng.below(2) == 0 {
                    let cut = e.start() + 1 + rng.below(e.size() - 1);
                    scrambled.push(Entry::new(e.start(), cut, e.kind()).unwrap());
                    scrambled.push(Entry::new(cut, e.end(), e.kind()).unwrap());
                } else {
                    scrambled.push(*e);
                }
                // Duplicates, and entries of a lower code inside, change nothing.
                if rng.below(3) == 0 {
                    scrambled.push(*e);
                }
                if e.kind().raw() > 1 && !e.kind().never_merges() && rng.below(3) == 0 {
                    scrambled.push(e.with_kind(Kind::Ram));
                }
                if rng.below(4) == 0 {
                    scrambled.push(Entry::new(e.start(), e.start(), Kind::Reserved).unwrap());
                }
            }
            for j in (1..scrambled.len()).rev() {
                scrambled.swap(j, rng.below(j as u64 + 1) as usize);
            }
            let map = Map::from_entries(scrambled).unwrap();
            assert_eq!(
                map.entries(),
                f.entries.as_slice(),
                "{} round {round}",
                f.name
            );
        }
    }
}

#[test]
fn memmap_and_mem_options_reproduce_the_user_maps() {
    let mut checked = 0;
    for f in fixtures() {
        let Some(user) = &f.user else { continue };
        let cmdline = f
            .cmdline
            .as_deref()
            .unwrap_or_else(|| panic!("{}: user map without command line", f.name));
        let mut map = Map::from_entries(f.entries.iter().copied()).unwrap();
        map.apply_cmdline(cmdline).unwrap();
        assert_eq!(map.entries(), user.as_slice(), "{}", f.name);
        checked += 1;
    }
    assert!(checked >= 4, "{checked} user maps checked");
}

#[test]
fn nvram_is_found_in_the_user_maps() {
    let gib = 1u64 << 30;
    for (name, base, size) in [
        ("supermicro-x8sie-xeon-x3430-memmap-8g-8g", 8 * gib, 8 * gib),
        ("pmem-io-howto-qemu-16g-memmap-12g-4g", 4 * gib, 12 * gib),
        ("intel-server-lkml-memmap-4g-4g", 4 * gib, 4 * gib),
    ] {
        let f = fixtures().into_iter().find(|f| f.name == name).unwrap();
        let map = Map::from_entries(f.user.unwrap()).unwrap();
        let nv: Vec<_> = map
            .nonvolatile()
            .map(|e| (e.start(), e.size(), e.kind()))
            .collect();
        assert_eq!(nv, [(base, size, Kind::Pram)], "{name}");
        assert_eq!(map.total_nonvolatile(), size);
    }
}

#[test]
fn usable_ranges_are_page_aligned_and_inside_ram() {
    for f in fixtures() {
        let map = Map::from_entries(f.entries.iter().copied()).unwrap();
        let usable: Vec<_> = map.usable_ranges(4096).unwrap().collect();
        assert!(!usable.is_empty(), "{}", f.name);
        let mut total = 0;
        for r in &usable {
            assert_eq!(r.start % 4096, 0);
            assert_eq!(r.end % 4096, 0);
            assert_eq!(map.kind_at(r.start), Some(Kind::Ram), "{}", f.name);
            assert_eq!(map.kind_at(r.end - 1), Some(Kind::Ram), "{}", f.name);
            total += r.end - r.start;
        }
        assert!(total <= map.total(Kind::Ram));
        assert!(map.total(Kind::Ram) - total < 4096 * 2 * map.iter_kind(Kind::Ram).count() as u64);
    }
}
