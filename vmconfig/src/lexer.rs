//! Splitting a file into `KEY = VALUE` settings, xl.cfg style: settings end
//! at a newline or a `;`, `#` starts a comment that runs to the end of the
//! line, a value is a quoted string (single or double quotes) or a number.
//! Nothing here knows which keys exist; [`crate::config`] does.

use crate::error::{ErrorKind, ParseError};

/// One value as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// The text between the quotes.
    Str(&'a str),
    /// An unquoted number, not yet parsed.
    Num(&'a str),
}

/// One `KEY = VALUE` setting and the line it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Setting<'a> {
    pub(crate) line: usize,
    pub(crate) key: &'a str,
    pub(crate) value: Value<'a>,
}

/// The settings of a file in order; the first syntax error ends it.
#[derive(Debug)]
pub(crate) struct Settings<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    done: bool,
}

impl<'a> Settings<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            line: 1,
            done: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Skips spaces and tabs (and the `\r` of a CRLF line end).
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Skips everything between settings: blanks, line ends, `;` and
    /// comments.
    fn skip_separators(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b';') => self.pos += 1,
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                }
                Some(b'#') => self.skip_comment(),
                _ => return,
            }
        }
    }

    fn skip_comment(&mut self) {
        while !matches!(self.peek(), None | Some(b'\n')) {
            self.pos += 1;
        }
    }

    /// Takes bytes while `keep` says so; the slice ends at an ASCII byte or
    /// the end, so it is always on a character boundary.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    fn error(&mut self, kind: ErrorKind<'a>) -> ParseError<'a> {
        self.done = true;
        ParseError::at(self.line, kind)
    }

    fn setting(&mut self) -> Result<Setting<'a>, ParseError<'a>> {
        let line = self.line;
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            return Err(self.error(ErrorKind::ExpectedKey));
        }
        let key = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
        self.skip_blanks();
        if self.peek() != Some(b'=') {
            return Err(self.error(ErrorKind::ExpectedEquals { key }));
        }
        self.pos += 1;
        self.skip_blanks();
        let value = match self.peek() {
            Some(quote @ (b'"' | b'\'')) => {
                self.pos += 1;
                let inner = self.take_while(|b| b != quote && b != b'\n' && b != b'\\');
                match self.peek() {
                    Some(b) if b == quote => self.pos += 1,
                    Some(b'\\') => return Err(self.error(ErrorKind::Escape { key })),
                    _ => return Err(self.error(ErrorKind::UnterminatedString { key })),
                }
                Value::Str(inner)
            }
            Some(b'[') => return Err(self.error(ErrorKind::List { key })),
            None | Some(b'\n' | b';' | b'#') => {
                return Err(self.error(ErrorKind::MissingValue { key }));
            }
            Some(first) => {
                let word = self.take_while(|b| {
                    !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'#' | b'"' | b'\'')
                });
                if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
                    return Err(self.error(ErrorKind::BareWord { key, word }));
                }
                Value::Num(word)
            }
        };
        self.skip_blanks();
        match self.peek() {
            None | Some(b'\n' | b';' | b'#') => Ok(Setting { line, key, value }),
            Some(_) => Err(self.error(ErrorKind::TrailingText { key })),
        }
    }
}

impl<'a> Iterator for Settings<'a> {
    type Item = Result<Setting<'a>, ParseError<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.skip_separators();
        if self.peek().is_none() {
            self.done = true;
            return None;
        }
        Some(self.setting())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<([Option<Setting<'_>>; 4], usize), ParseError<'_>> {
        let mut out = [None; 4];
        let mut n = 0;
        for s in Settings::new(text) {
            if let Some(slot) = out.get_mut(n) {
                *slot = Some(s?);
            }
            n += 1;
        }
        Ok((out, n))
    }

    #[test]
    fn settings_lines_comments_and_semicolons() {
        let text = "# a VM\n\nname = \"a\" # trailing\r\nmemory=32; nvram = '16'\n  ;;\n";
        let (s, n) = all(text).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            s[0],
            Some(Setting {
                line: 3,
                key: "name",
                value: Value::Str("a")
            })
        );
        assert_eq!(
            s[1],
            Some(Setting {
                line: 4,
                key: "memory",
                value: Value::Num("32")
            })
        );
        assert_eq!(
            s[2],
            Some(Setting {
                line: 4,
                key: "nvram",
                value: Value::Str("16")
            })
        );
        assert_eq!(all("").unwrap().1, 0);
        assert_eq!(all("# only a comment").unwrap().1, 0);
        assert_eq!(
            all("k = \"a # not a comment; nor a separator\"").unwrap().1,
            1
        );
        assert_eq!(
            all("k = 'say \"hi\"'").unwrap().0[0].unwrap().value,
            Value::Str("say \"hi\"")
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases: &[(&str, usize, ErrorKind<'_>)] = &[
            ("\n\n= 3", 3, ErrorKind::ExpectedKey),
            ("9x = 3", 1, ErrorKind::ExpectedKey),
            ("k 3", 1, ErrorKind::ExpectedEquals { key: "k" }),
            ("k =\n3", 1, ErrorKind::MissingValue { key: "k" }),
            ("k = ", 1, ErrorKind::MissingValue { key: "k" }),
            ("\nk = \"abc", 2, ErrorKind::UnterminatedString { key: "k" }),
            (
                "k = \"ab\ncd\"",
                1,
                ErrorKind::UnterminatedString { key: "k" },
            ),
            ("k = \"a\\\"b\"", 1, ErrorKind::Escape { key: "k" }),
            ("k = [1, 2]", 1, ErrorKind::List { key: "k" }),
            (
                "k = hvm",
                1,
                ErrorKind::BareWord {
                    key: "k",
                    word: "hvm",
                },
            ),
            ("k = 3 4", 1, ErrorKind::TrailingText { key: "k" }),
            ("k = \"a\"b", 1, ErrorKind::TrailingText { key: "k" }),
        ];
        for (text, line, kind) in cases {
            let err = all(text).unwrap_err();
            assert_eq!(err, ParseError::at(*line, *kind), "{text:?}");
        }
    }

    #[test]
    fn stops_after_the_first_error() {
        let mut it = Settings::new("k = [\nj = 1");
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn non_ascii_text_never_splits_a_character() {
        for text in ["k = \"é\"", "é = 1", "k = 1é", "k = \"日本", "k = 'ü'ü"] {
            let _ = all(text);
        }
        assert_eq!(
            all("k = \"é\"").unwrap().0[0].unwrap().value,
            Value::Str("é")
        );
    }
}
