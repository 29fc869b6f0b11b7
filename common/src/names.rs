//! The syntax Kubernetes and Prometheus accept for names, labels, ports, quantities and
//! durations, so a bad value fails here with a reason instead of at `kubectl apply`.

/// A DNS-1123 label: what Kubernetes accepts for namespaces, Services and most object names.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid DNS-1123 label: use at most 63 lowercase letters, digits and \
                '-', starting and ending with a letter or digit"
        ))
    }
}

/// A DNS-1123 subdomain: what Kubernetes accepts for ConfigMap and Deployment names.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 || s.is_empty() || s.split('.').any(|part| dns1123_label(part).is_err()) {
        return Err(format!(
            "`{s}` is not a valid DNS-1123 subdomain: dot-separated lowercase labels of letters, \
                digits and '-', 253 characters at most"
        ));
    }
    Ok(())
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        dns1123_subdomain(p).map_err(|_| {
            format!(
                "label key `{s}` has an invalid prefix `{p}`; it must be a DNS \
                subdomain such as app.kubernetes.io"
            )
        })?;
    }
    if name.is_empty() || !label_chars(name) {
        return Err(format!(
            "label key `{s}` is invalid: the name part must be 1-63 letters, digits, '-', '_' or \
                '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_`, `.`, alphanumeric at both ends.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || label_chars(s) {
        Ok(())
    } else {
        Err(format!(
            "label value `{s}` is invalid: use at most 63 letters, digits, '-', '_' or '.', \
                starting and ending with a letter or digit"
        ))
    }
}

fn label_chars(s: &str) -> bool {
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// An IANA service name: what a container port or Service port `name` must be.
pub fn port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid port name: at most 15 lowercase letters, digits and single '-', \
                with at least one letter"
        ))
    }
}

/// A port number, 1 to 65535.
pub fn port(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{n} is not a port; use a number from 1 to 65535"))
}

/// A Kubernetes resource quantity such as `50m`, `100Mi`, `0.5` or `1e3`.
pub fn quantity(s: &str) -> Result<(), String> {
    let digits_end = s
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-'))))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(digits_end);
    let number_ok = number.trim_start_matches(['+', '-']).parse::<f64>().is_ok();
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .is_some_and(|e| e.trim_start_matches(['+', '-']).parse::<u32>().is_ok());
    if number_ok && suffix_ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a Kubernetes quantity; write it as 50m or 0.1 for CPU and 10Mi or 15Mi \
                for memory"
        ))
    }
}

/// A Kubernetes memory quantity (`15Mi`, `64M`, `1Gi`, `16777216`, `1e6`) in bytes; `None`
/// when it is not a quantity or is negative. Fractions of a byte round up, as Kubernetes does.
pub fn quantity_bytes(s: &str) -> Option<u64> {
    quantity(s).ok()?;
    let binary = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)];
    let decimal = [("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15), ("E", 18)];
    let (number, factor) = if let Some((n, shift)) =
        binary.iter().find_map(|(suffix, shift)| Some((s.strip_suffix(suffix)?, *shift)))
    {
        (n, 2f64.powi(shift))
    } else if let Some((n, exp)) =
        decimal.iter().find_map(|(suffix, exp)| Some((s.strip_suffix(suffix)?, *exp)))
    {
        (n, 10f64.powi(exp))
    } else if let Some(m) = s.strip_suffix('m') {
        (m, 1e-3)
    } else {
        (s, 1.0)
    };
    // An exponent form (`1e6`) parses as a float by itself.
    let bytes = number.parse::<f64>().ok()? * factor;
    (bytes >= 0.0 && bytes.is_finite()).then(|| bytes.ceil().min(u64::MAX as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities_in_bytes() {
        for (q, bytes) in [
            ("15Mi", 15 << 20),
            ("1Gi", 1 << 30),
            ("64M", 64_000_000),
            ("16777216", 16 << 20),
            ("1e6", 1_000_000),
            ("0.5Ki", 512),
            ("1500m", 2),
        ] {
            assert_eq!(quantity_bytes(q), Some(bytes), "{q}");
        }
        for bad in ["", "15MB", "-1Mi", "Mi", "15 Mi"] {
            assert_eq!(quantity_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn dns_labels() {
        assert!(dns1123_label("identity-service").is_ok());
        for bad in ["", "Identity", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key("app.kubernetes.io/name").is_ok());
        assert!(label_key("prometheus").is_ok());
        assert!(label_key("Bad_Prefix/x").is_err());
        assert!(label_key("a/").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("kube-prometheus").is_ok());
        assert!(label_value("has space").is_err());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn port_names_and_numbers() {
        assert!(port_name("prometheus").is_ok());
        assert!(port_name("http-metrics").is_ok());
        assert!(port_name("prometheus-metrics").is_err(), "16 characters");
        assert!(port_name("9090").is_err());
        assert!(port_name("a--b").is_err());
        assert_eq!(port(9090), Ok(9090));
        assert!(port(0).is_err());
        assert!(port(70000).unwrap_err().contains("1 to 65535"));
    }

    #[test]
    fn quantities() {
        for ok in ["50m", "100m", "0.1", "10Mi", "15Mi", "1", "1e3", "1.5Gi"] {
            assert!(quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "10MB", "ten", "1.2.3", "5 Mi"] {
            assert!(quantity(bad).is_err(), "{bad}");
        }
    }
}
