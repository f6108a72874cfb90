//! Counting tests from machine-readable reports, never from the human
//! lines a test harness prints: nextest's JUnit XML (the workspace and loom
//! tests) and libtest's JSON events (doctests and Miri, which nextest does
//! not run).

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// What one run reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) passed: u64,
    pub(super) failed: u64,
    /// The names of the failed tests.
    pub(super) failures: Vec<String>,
}

impl Counts {
    fn fail(&mut self, name: String) {
        self.failed += 1;
        self.failures.push(name);
    }
}

fn attribute(element: &BytesStart<'_>, key: &str) -> Result<String, String> {
    match element.try_get_attribute(key) {
        Ok(Some(a)) => a
            .unescape_value()
            .map(|v| v.into_owned())
            .map_err(|e| format!("JUnit report: attribute {key}: {e}")),
        Ok(None) => Ok(String::new()),
        Err(e) => Err(format!("JUnit report: attribute {key}: {e}")),
    }
}

/// Counts a JUnit report: every `<testcase>` passed unless it holds a
/// `<failure>` or `<error>`; a skipped one is not counted (as libtest's
/// ignored tests).
pub(super) fn junit(xml: &str) -> Result<Counts, String> {
    let mut reader = Reader::from_str(xml);
    let mut counts = Counts::default();
    let mut suites = 0u32;
    // The test case being read, and what it holds so far.
    let mut case: Option<(String, bool, bool)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("JUnit report at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testsuite" => suites += 1,
            Event::Start(e) if e.name().as_ref() == b"testcase" => {
                let name = format!("{} {}", attribute(&e, "classname")?, attribute(&e, "name")?);
                case = Some((name, false, false));
            }
            Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                let _ = attribute(&e, "name")?;
                counts.passed += 1;
            }
            Event::Start(e) | Event::Empty(e) => {
                if let Some((_, failed, skipped)) = case.as_mut() {
                    match e.name().as_ref() {
                        b"failure" | b"error" => *failed = true,
                        b"skipped" => *skipped = true,
                        _ => {}
                    }
                }
            }
            Event::End(e) if e.name().as_ref() == b"testcase" => match case.take() {
                Some((name, true, _)) => counts.fail(name),
                Some((_, false, false)) => counts.passed += 1,
                Some((_, false, true)) => {}
                None => return Err("JUnit report: a </testcase> without its start".into()),
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if case.is_some() {
        return Err("JUnit report: ends inside a test case".into());
    }
    if suites == 0 {
        return Err("JUnit report: no <testsuite>".into());
    }
    Ok(counts)
}

/// Counts libtest's JSON events (`--format json`): one `test` event per
/// finished test. Each `suite` event's own totals must agree with the
/// tests seen since the suite started, so a dropped or garbled line is
/// caught rather than miscounted. Lines that are not JSON objects (rustdoc
/// and Miri may print their own) are ignored.
/// The tests libtest's JSON events report as run (passed or failed).
pub(super) fn libtest_ran(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "test" && (v["event"] == "ok" || v["event"] == "failed"))
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

/// The first of `filters` (libtest substring filters) that no test in
/// `ran` matches: a filter gone stale after a rename runs nothing.
pub(super) fn unmatched_filter<'f>(filters: &'f [String], ran: &[String]) -> Option<&'f str> {
    filters
        .iter()
        .map(String::as_str)
        .find(|f| !ran.iter().any(|name| name.contains(f)))
}

pub(super) fn libtest_json(stdout: &str) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let (mut suite_passed, mut suite_failed) = (0u64, 0u64);
    let mut suites = 0u32;
    let mut open = false;
    for line in stdout.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("libtest JSON {line:?}: {e}"))?;
        let event = v["event"].as_str().unwrap_or_default();
        match (v["type"].as_str().unwrap_or_default(), event) {
            ("suite", "started") => {
                if open {
                    return Err("libtest JSON: a suite started inside another".into());
                }
                open = true;
                (suite_passed, suite_failed) = (0, 0);
            }
            ("suite", "ok" | "failed") => {
                if !open {
                    return Err("libtest JSON: a suite ended that never started".into());
                }
                open = false;
                suites += 1;
                let total = |key: &str| v[key].as_u64().unwrap_or(u64::MAX);
                if total("passed") != suite_passed || total("failed") != suite_failed {
                    return Err(format!(
                        "libtest JSON: a suite reports {} passed, {} failed, its test events {suite_passed} and {suite_failed}",
                        v["passed"], v["failed"]
                    ));
                }
            }
            ("test", "ok") => {
                suite_passed += 1;
                counts.passed += 1;
            }
            // libtest's `timeout` event only warns that a test has run
            // for over 60 s; the same test reports `ok` or `failed` later.
            ("test", "failed") => {
                suite_failed += 1;
                counts.fail(v["name"].as_str().unwrap_or("?").to_owned());
            }
            _ => {}
        }
    }
    if open {
        return Err("libtest JSON: the last suite never finished (crashed?)".into());
    }
    if suites == 0 {
        return Err("libtest JSON: no test suite ran".into());
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_counts_cases_by_outcome() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1" errors="1" uuid="x" timestamp="t" time="0.1">
  <testsuite name="a" tests="2" disabled="0" errors="0" failures="0">
    <testcase name="t1" classname="a" timestamp="t" time="0.0"/>
    <testcase name="t2" classname="a" timestamp="t" time="0.0">
      <system-out>x &lt; y</system-out>
    </testcase>
  </testsuite>
  <testsuite name="b" tests="3" disabled="0" errors="1" failures="1">
    <testcase name="bad" classname="b" timestamp="t" time="0.0">
      <failure type="test failure">assertion failed</failure>
    </testcase>
    <testcase name="crash" classname="b" timestamp="t" time="0.0"><error type="SIGSEGV"/></testcase>
    <testcase name="skip" classname="b" timestamp="t" time="0.0"><skipped/></testcase>
  </testsuite>
</testsuites>"#;
        assert_eq!(
            junit(xml),
            Ok(Counts {
                passed: 2,
                failed: 2,
                failures: vec!["b bad".into(), "b crash".into()],
            })
        );
    }

    #[test]
    fn junit_refuses_a_truncated_or_empty_report() {
        assert!(junit("<testsuites><testsuite name=\"a\"><testcase name=\"x\">").is_err());
        assert!(junit("<testsuites></testsuites>").is_err());
        assert!(junit("").is_err());
    }

    #[test]
    fn libtest_json_counts_test_events() {
        let out = r#"
   Doc-tests nvirt_e820
{ "type": "suite", "event": "started", "test_count": 3 }
{ "type": "test", "event": "started", "name": "a" }
{ "type": "test", "name": "a", "event": "ok" }
{ "type": "test", "name": "b", "event": "failed", "stdout": "x" }
{ "type": "test", "name": "c", "event": "ignored" }
{ "type": "suite", "event": "failed", "passed": 1, "failed": 1, "ignored": 1, "measured": 0, "filtered_out": 0, "exec_time": 0.1 }
{ "type": "suite", "event": "started", "test_count": 1 }
{ "type": "test", "name": "d", "event": "ok" }
{ "type": "suite", "event": "ok", "passed": 1, "failed": 0, "ignored": 0, "measured": 0, "filtered_out": 0, "exec_time": 0.1 }
"#;
        assert_eq!(
            libtest_json(out),
            Ok(Counts {
                passed: 2,
                failed: 1,
                failures: vec!["b".into()],
            })
        );
    }

    #[test]
    fn a_filter_that_ran_no_test_is_found() {
        let out = r#"{ "type": "test", "name": "pmem::x86::tests::a", "event": "ok" }
{ "type": "test", "name": "sim::crash::tests::b", "event": "failed" }
{ "type": "test", "name": "other::c", "event": "ignored" }"#;
        let ran = libtest_ran(out);
        assert_eq!(ran, ["pmem::x86::tests::a", "sim::crash::tests::b"]);
        let filters = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(unmatched_filter(&filters(&["pmem::", "sim::"]), &ran), None);
        assert_eq!(
            unmatched_filter(&filters(&["pmem::", "other::"]), &ran),
            Some("other::")
        );
    }

    #[test]
    fn a_slow_test_warning_is_not_a_failure() {
        let out = r#"{ "type": "suite", "event": "started", "test_count": 1 }
{ "type": "test", "event": "started", "name": "slow" }
{ "type": "test", "event": "timeout", "name": "slow" }
{ "type": "test", "name": "slow", "event": "ok" }
{ "type": "suite", "event": "ok", "passed": 1, "failed": 0, "ignored": 0, "measured": 0, "filtered_out": 0, "exec_time": 61.0 }
"#;
        assert_eq!(
            libtest_json(out),
            Ok(Counts {
                passed: 1,
                failed: 0,
                failures: Vec::new(),
            })
        );
    }

    #[test]
    fn libtest_json_refuses_disagreeing_or_unfinished_suites() {
        let lost = r#"{ "type": "suite", "event": "started", "test_count": 2 }
{ "type": "test", "name": "a", "event": "ok" }
{ "type": "suite", "event": "ok", "passed": 2, "failed": 0 }"#;
        assert!(libtest_json(lost).is_err());
        let crashed = r#"{ "type": "suite", "event": "started", "test_count": 2 }
{ "type": "test", "name": "a", "event": "ok" }"#;
        assert!(libtest_json(crashed).is_err());
        assert!(libtest_json("no json at all\n").is_err());
    }
}
