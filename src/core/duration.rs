//! Human-readable durations ("500ms", "10s", "1min") as specs, scenarios, configuration and
//! command lines write them: one parser, one error text.

use std::time::Duration;

/// Longest duration accepted anywhere: beyond a year is surely a typo (and keeps millisecond
/// arithmetic far from overflow).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses `text` (surrounding blanks ignored); the error says what was wrong and how to write
/// a duration, for the caller to prefix with the field's name.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write e.g. \"500ms\", \"10s\", \"1min\"")
    })?;
    if d > MAX_DURATION {
        return Err(format!("{text:?} is longer than a year"));
    }
    Ok(d)
}

/// Formats milliseconds the way [`parse_duration`] reads them ("1h", "10m 30s", "250ms").
pub fn format_millis(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_errors_say_how_to_write_one() {
        assert_eq!(parse_duration(" 250ms "), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1min"), Ok(Duration::from_secs(60)));
        let e = parse_duration("ten seconds").unwrap_err();
        assert!(
            e.contains("is not a duration") && e.contains("\"10s\""),
            "{e}"
        );
        let e = parse_duration("400days").unwrap_err();
        assert_eq!(e, "\"400days\" is longer than a year");
        assert_eq!(format_millis(3_600_000), "1h");
        assert_eq!(
            parse_duration(&format_millis(630_250)),
            Ok(Duration::from_millis(630_250))
        );
    }
}
