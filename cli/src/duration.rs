//! Durations on the command line, as operators type them: `500ms`, `30s`,
//! `2m`, `1m30s`, `2h` (humantime's syntax; a bare number is seconds), and
//! for `--wait`, `forever`.

use std::time::Duration;

/// Parses a duration: humantime's syntax (`1m30s`, `500ms`, `2h`), or a bare
/// number of seconds (`30`, `1.5`).
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}; e.g. 500ms, 30s, 1m30s, 2h)"))
}

/// How long `run` waits for its lock: a duration, or `forever`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait(pub(crate) Option<Duration>);

/// Parses `--wait`: a duration ([`parse`]) or `forever`.
pub(crate) fn parse_wait(text: &str) -> Result<Wait, String> {
    if text.trim().eq_ignore_ascii_case("forever") {
        return Ok(Wait(None));
    }
    parse(text).map(|d| Wait(Some(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse("ten").is_err());
        assert!(parse("-1").is_err());
        assert!(matches!(parse("3x"), Err(e) if e.contains("not a duration")));
        assert_eq!(parse_wait("forever"), Ok(Wait(None)));
        assert_eq!(parse_wait("10s"), Ok(Wait(Some(Duration::from_secs(10)))));
    }
}
