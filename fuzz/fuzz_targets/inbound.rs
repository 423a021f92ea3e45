//! The inbound parser on arbitrary input: never panics, accepts only safe ids.
#![no_main]

use ghl_csv_finalize::fronts::http::inbound::{self, BodyKind, Sources};
use libfuzzer_sys::fuzz_target;

fn safe(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Sections separated by 0xFF: path parameter, path, query, body.
    let mut parts = rest.splitn(4, |b| *b == 0xFF);
    let param = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let kind = match selector % 3 {
        0 => BodyKind::Empty,
        1 => BodyKind::Json,
        _ => BodyKind::Form,
    };
    let params = [(
        if selector & 4 == 0 {
            "locationId"
        } else {
            "csvId"
        },
        param.as_str(),
    )];
    let sources = Sources {
        path_params: if selector & 8 == 0 { &params } else { &[] },
        path: &path,
        query: (selector & 16 == 0).then_some(query.as_str()),
        body: if kind == BodyKind::Empty { &[] } else { body },
        kind,
    };
    if let Ok(request) = inbound::parse(sources) {
        assert!(safe(request.location_id.as_str()) && safe(request.csv_id.as_str()));
        assert!(request.user_id.as_ref().is_none_or(|u| safe(u.as_str())));
    }
    let content_type = http::HeaderValue::from_bytes(&path.as_bytes()[..path.len().min(64)]).ok();
    let _ = inbound::body_kind(content_type.as_ref(), body);
});
