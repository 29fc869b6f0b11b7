//! Hop-by-hop header handling (RFC 9110 §7.6.1).
//!
//! A proxy must not forward the fields that describe one connection: `Connection` itself, every
//! field that `Connection` names, and the fields RFC 9110 §7.6.1 (and RFC 9112 for
//! `Transfer-Encoding`, RFC 7230 §A.1.2 for `Keep-Alive`) lists as hop-by-hop. `Proxy-Connection`
//! is not standard but some clients still send it; dropping it is harmless. Each side of the
//! sidecar frames its own messages, so `Content-Length` survives while `Transfer-Encoding` does not.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Fields removed on every hop, whatever `Connection` says.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The fields `Connection` names: hop-by-hop for this message, whatever they are.
pub fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        // Split the raw bytes: a value with obs-text elsewhere in it still names its fields.
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect()
}

/// Removes hop-by-hop fields, including those that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named = connection_named(headers);
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_fixed_and_connection_named_fields() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret-Hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("Basic eA=="));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "content-length"]);
    }

    #[test]
    fn a_connection_value_with_obs_text_still_names_its_fields() {
        // Found by the fuzz tests: a byte over 0x7f anywhere in the value made it unreadable as a
        // str, so the fields it named were forwarded.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_bytes(b"clos\x80, x-hop").unwrap());
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
    }
}
