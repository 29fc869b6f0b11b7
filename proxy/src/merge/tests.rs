use super::*;

fn with(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (http::HeaderName::from_static(k), HeaderValue::from_static(v)))
        .collect()
}

#[test]
fn formats_are_told_apart_by_media_type_and_encoding() {
    for (headers, format) in [
        (with(&[("content-type", "text/plain; version=0.0.4")]), Format::Text),
        (with(&[("content-type", "Text/Plain;version=1.0.0;escaping=allow-utf-8")]), Format::Text),
        (with(&[]), Format::Text),
        (
            with(&[("content-type", "application/openmetrics-text; version=1.0.0")]),
            Format::OpenMetrics,
        ),
        (
            with(&[(
                "content-type",
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
            )]),
            Format::Protobuf,
        ),
        (
            with(&[("content-type", "application/vnd.google.protobuf; encoding=text")]),
            Format::Other,
        ),
        (with(&[("content-type", "application/json")]), Format::Other),
        (with(&[("content-type", "text/plain"), ("content-encoding", "gzip")]), Format::Other),
        (with(&[("content-type", "text/plain"), ("content-encoding", "identity")]), Format::Text),
    ] {
        assert_eq!(Format::of(&headers), format, "{headers:?}");
    }
}

#[test]
fn only_a_final_eof_line_is_dropped() {
    let strip = |end: &str, before: Option<u8>| {
        let mut v = end.as_bytes().to_vec();
        strip_eof(&mut v, before);
        String::from_utf8(v).unwrap()
    };
    assert_eq!(strip("x 1\n# EOF\n", None), "x 1\n");
    assert_eq!(strip("# EOF", Some(b'\n')), "");
    assert_eq!(strip("# EOF\n", None), "");
    assert_eq!(strip("a# EOF\n", None), "a# EOF\n", "not at the start of a line");
    assert_eq!(strip("# EOF\n", Some(b'x')), "# EOF\n");
    assert_eq!(strip("x 1\n", None), "x 1\n");
}

/// Reads a varint; the protobuf below is checked field by field against metrics.proto.
fn varint(b: &mut &[u8]) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[0];
        *b = &b[1..];
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

fn field<'a>(b: &mut &'a [u8]) -> (u64, &'a [u8]) {
    let key = varint(b);
    let len = if key & 7 == 2 {
        varint(b) as usize
    } else if key & 7 == 1 {
        8
    } else {
        0
    };
    if key & 7 == 0 {
        let v = varint(b);
        return (key >> 3, Box::leak(Box::new(v.to_le_bytes())));
    }
    let (data, rest) = b.split_at(len);
    *b = rest;
    (key >> 3, data)
}

#[test]
fn the_protobuf_up_family_is_a_delimited_gauge_with_a_target_label() {
    let body = protobuf_gauge(
        "up_x",
        "help",
        &[("http://a/m".into(), true), ("http://b/m".into(), false)],
    );
    let mut b = &body[..];
    let len = varint(&mut b) as usize;
    assert_eq!(len, b.len(), "one length-prefixed message");
    let mut fields = Vec::new();
    while !b.is_empty() {
        fields.push(field(&mut b));
    }
    assert_eq!(fields[0], (1, &b"up_x"[..]));
    assert_eq!(fields[1], (2, &b"help"[..]));
    assert_eq!(fields[2].0, 3);
    assert_eq!(fields[2].1[0], 1, "type GAUGE");
    let metrics: Vec<_> = fields.iter().filter(|(n, _)| *n == 4).collect();
    assert_eq!(metrics.len(), 2);
    for ((_, metric), (target, value)) in
        metrics.iter().zip([("http://a/m", 1.0), ("http://b/m", 0.0)])
    {
        let mut m = *metric;
        let (n, mut label) = field(&mut m);
        assert_eq!(n, 1);
        assert_eq!(field(&mut label), (1, &b"target"[..]));
        assert_eq!(field(&mut label), (2, target.as_bytes()));
        let (n, mut gauge) = field(&mut m);
        assert_eq!(n, 2);
        let (n, v) = field(&mut gauge);
        assert_eq!(n, 1);
        assert_eq!(f64::from_le_bytes(v.try_into().unwrap()), value);
    }
}
