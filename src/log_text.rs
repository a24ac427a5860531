//! Text from other parties, made safe to write into a log line.
//!
//! Owns one thing: [`Escaped`], the `Display` adapter for every string a remote party controls
//! (executor ids, addresses, session ids, job and task names, failure messages, reasons, the
//! messages of answers) that goes into a log field or message. tracing-subscriber's text
//! formatter writes `%` fields verbatim, so such a string could end the line and forge the next
//! one, or carry terminal escapes (colours, cursor moves, a cleared screen) and bidirectional
//! controls that make the line read differently from what it holds. `Escaped` writes those
//! characters as visible escapes instead; everything else, non-ASCII letters included, is
//! written unchanged. The values themselves stay as they are wherever they are stored or
//! answered to API clients (JSON and protobuf are not terminals).

use std::fmt;

use crate::core::names::is_invisible_or_bidi;

/// Writes `self.0` with line breaks, control characters (C0, DEL, C1) and invisible or
/// bidirectional formatting characters escaped: `\n`, `\r`, `\t`, and `\u{..}` for the rest
/// (`\u{1b}`, `\u{202e}`, `\u{2028}`). Use it as `field = %Escaped(&text)`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

/// Must this character be written as an escape?
fn unsafe_in_a_log(c: char) -> bool {
    c.is_control() || is_invisible_or_bidi(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(unsafe_in_a_log) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found at a char boundary");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_makes_line_breaks_terminal_escapes_and_bidi_visible() {
        assert_eq!(
            Escaped("lost\nINFO executor registered").to_string(),
            "lost\\nINFO executor registered"
        );
        assert_eq!(Escaped("a\r\tb").to_string(), "a\\r\\tb");
        assert_eq!(
            Escaped("\x1b[31mred\x1b[0m").to_string(),
            "\\u{1b}[31mred\\u{1b}[0m"
        );
        assert_eq!(Escaped("abc\u{202E}fed").to_string(), "abc\\u{202e}fed");
        assert_eq!(
            Escaped("zero\u{200B}width\u{FEFF}\u{2066}\u{85}\u{7f}\u{2028}").to_string(),
            "zero\\u{200b}width\\u{feff}\\u{2066}\\u{85}\\u{7f}\\u{2028}"
        );
        for line in [
            "ordinary text: exit code 1 (see /tmp/x.log)",
            "",
            "ünïcode 名前 ok",
            "exec-a 10.0.0.1:6124 [::1]:6124",
            "C:\\path\\with\\backslashes",
        ] {
            assert_eq!(Escaped(line).to_string(), line);
        }
    }
}
