//! Durations in the one grammar every meshscrape file and flag uses: Prometheus's (`250ms`,
//! `30s`, `1m30s`, `2h`), which is also what prometheus-operator's CRDs accept, so a value that
//! is valid for the sidecar is valid in a monitor and the other way round.

use std::time::Duration;

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 31_536_000_000),
    ("w", 604_800_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus duration: whole numbers with units, largest unit first, each at most once
/// (`1h30m`, `1m30s`, `500ms`), or `0`. A bare number has no unit and is rejected, because a
/// sidecar that guesses seconds where the author meant milliseconds fails in production; so is a
/// fraction (`1.5s`), which Prometheus refuses too: the message says how to write it.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!("`{text}` {why}; write it as 250ms, 30s, 2m or 1m30s (units ms, s, m, h, d, w, y)")
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad("is empty"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("has no unit"));
    }
    if text.contains('.') {
        return Err(bad("is a fraction, which Prometheus's grammar has no room for"));
    }
    let mut rest = text;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| bad("is not a duration"))?;
        rest = &rest[digits..];
        // Units come in order, largest first, each at most once; "ms" is not "m" then "s".
        let (i, (unit, ms)) = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .find(|(_, (u, _))| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .ok_or_else(|| bad("is not a duration"))?;
        rest = &rest[unit.len()..];
        total = n
            .checked_mul(*ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("is out of range"))?;
        next_unit = i + 1;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration so that [`parse`] reads it back exactly (to the millisecond, the grammar's
/// finest unit; [`parse`] never yields anything finer).
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{millis}ms") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_people_write() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1h1m1s1ms"), Ok(Duration::from_millis(3_661_001)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_prometheus_rejects_and_says_how_to_write_it() {
        let err = parse("30").unwrap_err();
        assert!(err.contains("no unit") && err.contains("250ms"), "{err}");
        let err = parse("1.5s").unwrap_err();
        assert!(err.contains("fraction") && err.contains("1m30s"), "{err}");
        for bad in ["", "s", "30s1m", "1m1m", "30 s", "-1s", "5x", "99999999999999999999y"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for d in [Duration::from_millis(250), Duration::from_secs(10), Duration::from_millis(1500)]
        {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
