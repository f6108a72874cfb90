//! Property tests against a simple model: a random valid configuration,
//! written out in any of the ways xl.cfg allows (key order, quotes, number
//! bases, `;` or line ends, comments, blanks), parses to exactly that
//! configuration; `Display` writes it back to text that parses to it
//! again; and random damage to valid text never panics the parser: it
//! gives an error on a line of the text or a configuration that itself
//! round-trips.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::fmt::Write;

use nvirt_vmconfig::{
    Kind, MAX_MIB, MIB, OnPoweroff, ParseError, Populate, Uuid, VmConfig, check_set, id_from_name,
};
use proptest::prelude::*;

/// The model: what a file says, with owned strings.
#[derive(Clone, Debug)]
struct Model {
    name: String,
    uuid: Option<u128>,
    memory_mib: u64,
    nvram_mib: Option<u64>,
    nv_type: Option<u32>,
    target_mib: Option<u64>,
    populate: Option<Populate>,
    nvram_file: Option<String>,
    kernel: Option<String>,
    ramdisk: Option<String>,
    cmdline: Option<String>,
    on_poweroff: Option<OnPoweroff>,
}

impl Model {
    fn expected(&self) -> VmConfig<'_> {
        let nvram = self.nvram_mib.unwrap_or(0) * MIB;
        VmConfig {
            name: &self.name,
            uuid: self.uuid,
            memory: self.memory_mib * MIB,
            nvram,
            nvram_kind: Kind::from_raw(self.nv_type.unwrap_or(7)),
            nvram_file: self.nvram_file.as_deref(),
            nvram_target: self.target_mib.map_or(nvram, |t| t * MIB),
            nvram_populate: self.populate.unwrap_or_default(),
            kernel: self.kernel.as_deref(),
            ramdisk: self.ramdisk.as_deref(),
            cmdline: self.cmdline.as_deref(),
            on_poweroff: self.on_poweroff.unwrap_or_default(),
        }
    }
}

/// How one file writes the model.
#[derive(Clone, Debug)]
struct Style {
    order: Vec<usize>,
    /// Per setting: a number base (0 dec, 1 hex, 2 octal), quoted numbers,
    /// single quotes, `;` instead of a line end, a trailing comment, blanks.
    choices: Vec<(u8, bool, bool, bool, bool, u8)>,
    leading_comment: bool,
}

fn sizes() -> impl Strategy<Value = u64> {
    prop_oneof![1..64u64, 1..(MAX_MIB / 2), Just(MAX_MIB / 2)].prop_map(|half| half * 2)
}

fn path() -> impl Strategy<Value = String> {
    // Printable text without a backslash; at most one kind of quote.
    prop_oneof![
        "[ -~&&[^\\\\\"]]{1,24}",
        "[ -~&&[^\\\\']]{1,24}",
        "[a-zé/._-]{1,12}",
    ]
}

fn model() -> impl Strategy<Value = Model> {
    (
        "[A-Za-z0-9_.-]{1,32}",
        proptest::option::of(any::<u128>()),
        sizes(),
        proptest::option::of(prop_oneof![Just(0u64), sizes()]),
        proptest::option::of(prop_oneof![Just(7u32), Just(12), Just(90)]),
        proptest::option::of(any::<u64>()),
        proptest::option::of(prop_oneof![Just(Populate::Eager), Just(Populate::Touch)]),
        proptest::option::of(path()),
        proptest::option::of(path()),
        proptest::option::of(path()),
        proptest::option::of(prop_oneof!["", "[ -~&&[^\\\\\"]]{1,40}"]),
        proptest::option::of(prop_oneof![
            Just(OnPoweroff::Preserve),
            Just(OnPoweroff::Destroy)
        ]),
    )
        .prop_map(
            |(
                name,
                uuid,
                memory_mib,
                nvram_mib,
                nv_type,
                target,
                populate,
                file,
                kernel,
                ramdisk,
                cmdline,
                on_poweroff,
            )| {
                let nvram = nvram_mib.unwrap_or(0);
                let target_mib = target.map(|t| (t % (nvram / 2 + 1)) * 2);
                let has_kernel = kernel.is_some();
                Model {
                    name,
                    uuid,
                    memory_mib,
                    nvram_mib,
                    nv_type,
                    target_mib,
                    populate,
                    nvram_file: file.filter(|_| nvram > 0),
                    kernel,
                    ramdisk: ramdisk.filter(|_| has_kernel),
                    cmdline,
                    on_poweroff,
                }
            },
        )
}

fn style() -> impl Strategy<Value = Style> {
    (
        Just((0..12).collect::<Vec<usize>>()).prop_shuffle(),
        proptest::collection::vec(
            (
                0..3u8,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                0..4u8,
            ),
            12,
        ),
        any::<bool>(),
    )
        .prop_map(|(order, choices, leading_comment)| Style {
            order,
            choices,
            leading_comment,
        })
}

fn number(n: u64, base: u8, quoted: bool) -> String {
    let text = match base {
        1 => format!("0x{n:X}"),
        2 if n > 0 => format!("0{n:o}"),
        _ => n.to_string(),
    };
    if quoted { format!("\"{text}\"") } else { text }
}

fn string(s: &str, single: bool) -> String {
    let single = (single && !s.contains('\'')) || s.contains('"');
    if single {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

/// Writes `m` in `style`.
fn write(m: &Model, style: &Style) -> String {
    let mut out = String::new();
    if style.leading_comment {
        out.push_str("# generated; name = \"not this\"\n\n");
    }
    for (i, &which) in style.order.iter().enumerate() {
        let (base, quoted, single, semicolon, comment, blanks) = style.choices[i];
        let value = match which {
            0 => Some(string(&m.name, single)),
            1 => m.uuid.map(|u| string(&Uuid(u).to_string(), single)),
            2 => Some(number(m.memory_mib, base, quoted)),
            3 => m.nvram_mib.map(|n| number(n, base, quoted)),
            4 => m.nv_type.map(|t| number(u64::from(t), base, quoted)),
            5 => m.target_mib.map(|t| number(t, base, quoted)),
            6 => m.populate.map(|p| string(p.as_str(), single)),
            7 => m.nvram_file.as_deref().map(|s| string(s, single)),
            8 => m.kernel.as_deref().map(|s| string(s, single)),
            9 => m.ramdisk.as_deref().map(|s| string(s, single)),
            10 => m.cmdline.as_deref().map(|s| string(s, single)),
            _ => m.on_poweroff.map(|p| string(p.as_str(), single)),
        };
        let Some(value) = value else { continue };
        let key = [
            "name",
            "uuid",
            "memory",
            "nvram",
            "nvram_type",
            "nvram_target",
            "nvram_populate",
            "nvram_file",
            "kernel",
            "ramdisk",
            "cmdline",
            "on_poweroff",
        ][which];
        let pad = " \t".repeat(usize::from(blanks));
        let _ = write!(out, "{pad}{key}{pad}={pad}{value}{pad}");
        if comment {
            out.push_str(" # a comment; with \"quotes\"");
            out.push('\n');
        } else if semicolon {
            out.push(';');
        } else {
            out.push_str(if blanks == 3 { "\r\n" } else { "\n" });
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_valid_writing_parses_to_the_model(m in model(), style in style()) {
        let text = write(&m, &style);
        let parsed = VmConfig::parse(&text);
        prop_assert_eq!(parsed, Ok(m.expected()), "{}", text);
        let rendered = m.expected().to_string();
        prop_assert_eq!(VmConfig::parse(&rendered), Ok(m.expected()), "{}", rendered);
        prop_assert_eq!(m.expected().domain_id(), m.uuid.unwrap_or_else(|| id_from_name(&m.name)));
    }

    #[test]
    fn damage_never_panics(
        m in model(),
        style in style(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..3u8, any::<char>()), 1..6),
    ) {
        let mut text: Vec<char> = write(&m, &style).chars().collect();
        for (at, op, c) in edits {
            let c = if c.is_ascii() || c as u32 % 4 == 0 { c } else {
                *b"=\"'#;\n[\\0x-+ ".get(c as usize % 13).unwrap() as char
            };
            match op {
                0 if !text.is_empty() => { text.remove(at.index(text.len())); }
                1 if !text.is_empty() => { let i = at.index(text.len()); text[i] = c; }
                _ => { let i = at.index(text.len() + 1); text.insert(i, c); }
            }
        }
        let text: String = text.into_iter().collect();
        let lines = text.split('\n').count();
        match VmConfig::parse(&text) {
            Ok(vm) => {
                let rendered = vm.to_string();
                prop_assert_eq!(VmConfig::parse(&rendered), Ok(vm));
            }
            Err(e) => {
                let ParseError { line, .. } = e;
                if let Some(line) = line {
                    prop_assert!((1..=lines).contains(&line), "line {} of {}", line, lines);
                }
                prop_assert!(!e.in_file("x.cfg").to_string().is_empty());
            }
        }
    }

    #[test]
    fn check_set_finds_exactly_the_clashes(models in proptest::collection::vec(model(), 0..6)) {
        let vms: Vec<VmConfig<'_>> = models.iter().map(Model::expected).collect();
        let clash = (0..vms.len()).any(|j| (0..j).any(|i| {
            vms[i].name == vms[j].name
                || vms[i].domain_id() == vms[j].domain_id()
                || (vms[i].nvram_file.is_some() && vms[i].nvram_file == vms[j].nvram_file)
        }));
        match check_set(&vms) {
            Ok(()) => prop_assert!(!clash),
            Err(e) => {
                prop_assert!(clash);
                let (i, j) = e.indices();
                prop_assert!(i < j && j < vms.len());
            }
        }
    }
}

#[test]
fn sets_with_shared_names_and_files_clash() {
    let a = VmConfig::parse("name='a'\nmemory=8\nnvram=4\nnvram_file='f'").unwrap();
    let b = VmConfig::parse("name='b'\nmemory=8\nnvram=4\nnvram_file='f'").unwrap();
    assert!(check_set(&[a, b]).is_err());
    assert!(check_set(&[a]).is_ok());
}
