//! Parsing of loopback URLs and exact paths: the narrow grammar the sidecar accepts.
//!
//! The sidecar punches a plaintext hole through the mesh, so this grammar is deliberately small:
//! `http` only, a loopback host, an origin-form path without dot segments, query or fragment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{RESERVED_PREFIX, Route, Target};

const LOOPBACK_HINT: &str = "the sidecar forwards only to its own pod: use 127.0.0.1, another \
    127.x.y.z address, [::1] or localhost";

/// Checks an origin-form path: starts with `/`, only URI path characters, well-formed
/// percent-escapes, and no `.`/`..` segments (an exact match on such a path would invite confusion
/// with what a normalising client or app makes of it).
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with /"));
    }
    if path.len() > 1024 {
        return Err("the path is longer than 1024 bytes".into());
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "`{path}` has a query or fragment; routes match paths only, and query strings pass \
                through"
        ));
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            if hex.is_none() {
                return Err(format!("`{path}` has a % that is not followed by two hex digits"));
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if !allowed {
            return Err(format!(
                "`{}` contains `{}`, which a URI path cannot hold unescaped",
                path.escape_default(),
                char::from(b).escape_default()
            ));
        }
        i += 1;
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("`{path}` has a . or .. segment; write the path as the app serves it"));
    }
    Ok(())
}

/// Parses `http://HOST[:PORT][PATH]` with a loopback host; returns the address and the path.
fn parse_loopback_url(text: &str) -> Result<(SocketAddr, &str), String> {
    let rest = match text.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(format!(
                "`{text}` uses https; the sidecar talks plain http to its own pod over loopback, \
                    use http://"
            ));
        }
        _ => return Err(format!("`{text}` is not an http:// URL such as http://127.0.0.1:8080")),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!(
            "`{text}` has user information; credentials do not belong in the upstream URL"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) =
            v6.split_once(']').ok_or_else(|| format!("`{text}` has an unclosed [ in its host"))?;
        // After `]` comes `:port` or nothing: `[::1]8080` is not port 80 with junk ignored.
        if !after.is_empty() && !after.starts_with(':') {
            return Err(format!(
                "`{text}` has `{after}` after its [host]; write the port after a colon, as in \
                 http://[::1]:8080"
            ));
        }
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!("`{text}` has port `{p}`; a port is a number from 1 to 65535")
        })?,
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        // Resolved here, not at run time: the scratch image has no /etc/hosts or resolver.
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| format!("`{text}` has host `{host}`; {LOOPBACK_HINT}"))?
    };
    if !ip.is_loopback() {
        return Err(format!("`{text}` is not on loopback; {LOOPBACK_HINT}"));
    }
    Ok((SocketAddr::new(ip, port), path))
}

/// Parses the `upstream` value: a loopback `http://` URL with no path.
pub(super) fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    let (addr, path) = parse_loopback_url(text)?;
    if !(path.is_empty() || path == "/") {
        return Err(format!(
            "`{text}` has a path; the upstream is an address only, give paths in routes \
                (PUBLIC=TARGET)"
        ));
    }
    Ok(addr)
}

/// The most targets one route may merge: each takes an in-flight slot and a connection to the app.
pub const MAX_TARGETS: usize = 8;

/// Parses `PUBLIC=TARGET[|TARGET]...`, where each TARGET is a path on `upstream` or a full loopback
/// URL. `|` cannot appear in a path (it is not a URI character), so the split is unambiguous.
pub(super) fn parse_route(text: &str, upstream: SocketAddr) -> Result<Route, String> {
    let (public, targets) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not PUBLIC=TARGET, such as /metrics=/metrics"))?;
    check_path(public).map_err(|e| format!("public path {e}"))?;
    if public.starts_with(RESERVED_PREFIX) || public == "/-" {
        return Err(format!(
            "public path `{public}` is under /-/, which the sidecar keeps for /-/healthy, \
                /-/ready and /-/metrics; choose another"
        ));
    }
    let mut parsed: Vec<Target> = Vec::new();
    for target in targets.split('|') {
        let target = target.trim();
        if target.is_empty() {
            return Err(format!(
                "`{text}` has an empty target; separate targets with a single |, as in \
                    /metrics=/metrics|http://127.0.0.1:9100/metrics"
            ));
        }
        let (addr, path) = if target.starts_with('/') {
            (upstream, target)
        } else {
            let (addr, path) = parse_loopback_url(target)?;
            (addr, if path.is_empty() { "/" } else { path })
        };
        check_path(path).map_err(|e| format!("target path {e}"))?;
        let t = Target { addr, path: path.to_string() };
        if parsed.contains(&t) {
            return Err(format!(
                "`{text}` names http://{addr}{path} twice; a scrape would hold its series twice"
            ));
        }
        parsed.push(t);
    }
    if parsed.len() > MAX_TARGETS {
        return Err(format!(
            "`{text}` merges {} targets; a route merges at most {MAX_TARGETS}",
            parsed.len()
        ));
    }
    Ok(Route { public: public.to_string(), targets: parsed })
}
