//! Durations written the way Kubernetes and Prometheus users write them: `250ms`, `5s`, `2m`.

use std::time::Duration;

/// Parses `250ms`, `5s`, `1.5s` or `2m`; a bare number has no unit and is rejected, because
/// a sidecar that guesses seconds where the author meant milliseconds fails in production.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` has no unit; write it as 250ms, 5s or 2m"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write it as 250ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}` has unit `{unit}`; the units are ms, s and m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

/// Formats a duration so that [`parse`] reads it back exactly.
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
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn rejects_a_number_without_unit_and_says_how_to_write_it() {
        let err = parse("30").unwrap_err();
        assert!(err.contains("no unit"), "{err}");
        assert!(parse("5h").unwrap_err().contains("units are ms, s and m"));
        assert!(parse("-5s").is_err());
        assert!(parse("s").is_err());
    }

    #[test]
    fn format_round_trips() {
        for d in [Duration::from_millis(250), Duration::from_secs(10), Duration::from_millis(1500)]
        {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
