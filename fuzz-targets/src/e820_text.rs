//! Linux `BIOS-e820:` lines, old-format lines and `START END TYPE` triples;
//! what parses must print back to the same entry.

use nvirt_e820::text;

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for line in input.lines() {
        if let Ok(Some(entry)) = text::parse_line(line) {
            if !entry.is_empty() {
                let printed = entry.to_string();
                assert_eq!(text::parse_line(&printed), Ok(Some(entry)), "{printed}");
            }
        }
    }
}
