//! Choosing steps by name: `--only` and `--skip` patterns.
//!
//! A pattern selects a step when it equals the step's name, names a group
//! the step is in (`emulator` selects `emulator/crash-loop`), or matches it
//! as a glob where `*` stands for any run of characters (`fuzz/e820_*`).
//! A pattern that selects no step is an error: a typo must not turn into a
//! suite that silently runs less.

/// Whether `pattern` selects the step `name`.
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    if pattern.contains('*') {
        return glob(pattern.as_bytes(), name.as_bytes());
    }
    name == pattern
        || name
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `*` matches any run of bytes; every other byte matches itself.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((c, rest)) => name
            .split_first()
            .is_some_and(|(n, tail)| n == c && glob(rest, tail)),
    }
}

/// Which of `names` run: those any `only` pattern selects (all when `only`
/// is empty), minus those any `skip` pattern selects. Every pattern must
/// select at least one step.
pub(super) fn select(
    names: &[&str],
    only: &[String],
    skip: &[String],
) -> Result<Vec<bool>, String> {
    for (flag, patterns) in [("--only", only), ("--skip", skip)] {
        if let Some(p) = patterns
            .iter()
            .find(|p| !names.iter().any(|n| matches(p, n)))
        {
            return Err(format!(
                "{flag} {p:?} selects no step (`nvirt test --list` lists them)"
            ));
        }
    }
    let chosen: Vec<bool> = names
        .iter()
        .map(|n| {
            (only.is_empty() || only.iter().any(|p| matches(p, n)))
                && !skip.iter().any(|p| matches(p, n))
        })
        .collect();
    if !chosen.contains(&true) {
        return Err("the patterns leave no step to run".into());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "fmt",
        "tests",
        "doctests",
        "emulator/clippy-bare-metal",
        "emulator/qemu-amd-kernel-nv7",
        "emulator/crash-loop",
        "fuzz/e820_text",
        "fuzz/e820_bios",
        "fuzz/buddy_ops",
    ];

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn chosen(only: &[&str], skip: &[&str]) -> Result<Vec<&'static str>, String> {
        let picks = select(NAMES, &strings(only), &strings(skip))?;
        Ok(NAMES
            .iter()
            .zip(picks)
            .filter(|(_, p)| *p)
            .map(|(n, _)| *n)
            .collect())
    }

    #[test]
    fn names_groups_and_globs() {
        assert!(matches("tests", "tests"));
        assert!(!matches("tests", "doctests"));
        assert!(matches("emulator", "emulator/crash-loop"));
        assert!(!matches("emu", "emulator/crash-loop"));
        assert!(matches("fuzz/e820_*", "fuzz/e820_text"));
        assert!(!matches("fuzz/e820_*", "fuzz/buddy_ops"));
        assert!(matches("*loop", "emulator/crash-loop"));
        assert!(matches("*", "fmt"));
        assert!(!matches("f*z", "fuzz/e820_text"));
    }

    #[test]
    fn only_then_skip() {
        assert_eq!(chosen(&[], &[]).unwrap(), NAMES);
        assert_eq!(
            chosen(&["fmt", "fuzz"], &["fuzz/e820_*"]).unwrap(),
            ["fmt", "fuzz/buddy_ops"]
        );
        assert_eq!(
            chosen(&[], &["emulator", "fuzz"]).unwrap(),
            ["fmt", "tests", "doctests"]
        );
    }

    #[test]
    fn a_pattern_selecting_nothing_is_an_error() {
        assert!(chosen(&["fuz"], &[]).is_err());
        assert!(chosen(&[], &["emulator/bochs"]).is_err());
        assert!(chosen(&["fmt"], &["fmt"]).is_err());
    }
}
