//! Turning an inbound HTTP request into a [`FinalizeRequest`], or a precise 4xx.
//!
//! Everything here is pure: it reads the method, path, path parameters, query string, content
//! type and body bytes, and either returns typed ids or the contract's error. The three ids may
//! come from the path, the query string and the body (JSON or form, with aliases and HighLevel's
//! `customData`); wherever a field is given more than once, every value must agree.

use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::request::ids::{check_id, CsvId, LocationId, UserId};
use crate::request::key::{IdempotencyKey, KeyKind};
use crate::request::FinalizeRequest;

/// Largest accepted request body, in bytes (256 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET …/healthz`: liveness, no auth, no I/O.
    Health,
    /// `POST` on any path: finalize a CSV import.
    Finalize,
    /// `GET …/finalizations/{finalizationId}`: read a record (the id as given, unchecked).
    Finalization(&'a str),
}

/// Picks the route from the method and path, or answers 405.
pub fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, Error> {
    let path = path.trim_end_matches('/');
    if method == Method::POST {
        return Ok(Route::Finalize);
    }
    if method == Method::GET {
        if path.ends_with("/healthz") {
            return Ok(Route::Health);
        }
        if let Some((rest, id)) = path.rsplit_once('/') {
            if rest.ends_with("/finalizations") || rest == "finalizations" {
                return Ok(Route::Finalization(id));
            }
        }
    }
    Err(Error::MethodNotAllowed)
}

/// Answers 413 when the body exceeds [`MAX_BODY_BYTES`].
pub fn check_body_size(body: &[u8]) -> Result<(), Error> {
    if body.len() > MAX_BODY_BYTES {
        Err(Error::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        })
    } else {
        Ok(())
    }
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: the ids come from the path or the query string.
    Empty,
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// Decides how to read the body from its `Content-Type`, or answers 415.
pub fn body_kind(content_type: Option<&HeaderValue>, body: &[u8]) -> Result<BodyKind, Error> {
    if body.is_empty() {
        return Ok(BodyKind::Empty);
    }
    let media_type = content_type.and_then(|v| v.to_str().ok()).map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match media_type.as_deref() {
        Some("application/json") => Ok(BodyKind::Json),
        Some("application/x-www-form-urlencoded") => Ok(BodyKind::Form),
        _ => Err(Error::UnsupportedMediaType),
    }
}

/// The raw parts of a request that can carry the ids.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// Path parameters from the API Gateway route, if any.
    pub path_params: &'a [(&'a str, &'a str)],
    /// The request path (used for `/locations/{l}/csv/{c}/finalize` when there are no route
    /// parameters, as with Function URLs and ALB).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The body and how it is encoded.
    pub body: &'a [u8],
    /// The body's encoding, from [`body_kind`].
    pub kind: BodyKind,
}

/// Reads and checks the ids from every source.
pub fn parse(sources: Sources<'_>) -> Result<FinalizeRequest, Error> {
    read_fields(sources)?.finish()
}

/// Reads the ids of a signature-authenticated request. The signature covers the body alone, so
/// the body must name `locationId` and `csvId`, and a path or query value (`userId` included)
/// that the body does not carry too is refused: a captured signed request cannot be pointed at
/// another location or CSV.
pub fn parse_signed(sources: Sources<'_>) -> Result<FinalizeRequest, Error> {
    let fields = read_fields(sources)?;
    for (name, found) in [
        (Name::Location, &fields.location),
        (Name::Csv, &fields.csv),
        (Name::User, &fields.user),
    ] {
        let field = name.field();
        let required = name != Name::User;
        if (required || found.outside_body) && !found.in_body {
            return Err(Error::invalid_field(
                field,
                format!("{field} must be in the signed body: the signature covers only the body"),
            ));
        }
    }
    fields.finish()
}

fn read_fields(sources: Sources<'_>) -> Result<Fields, Error> {
    let mut fields = Fields::default();
    offer_path(&mut fields, sources.path_params, sources.path)?;
    if let Some(query) = sources.query {
        offer_query(&mut fields, query)?;
    }
    match sources.kind {
        BodyKind::Empty => {}
        BodyKind::Json => offer_body(&mut fields, &json_object(sources.body)?)?,
        BodyKind::Form => offer_body(&mut fields, &form_object(sources.body)?)?,
    }
    Ok(fields)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Location,
    Csv,
    User,
}

impl Name {
    fn field(self) -> &'static str {
        match self {
            Name::Location => LocationId::FIELD,
            Name::Csv => CsvId::FIELD,
            Name::User => UserId::FIELD,
        }
    }

    /// Maps a key as callers spell it (`csvId`, `csv_id`, …) to the field it sets.
    fn from_alias(key: &str) -> Option<Self> {
        match key {
            "locationId" | "location_id" => Some(Name::Location),
            "csvId" | "csv_id" => Some(Name::Csv),
            "userId" | "user_id" => Some(Name::User),
            _ => None,
        }
    }
}

/// The value found so far for one field, and where it came from.
#[derive(Debug, Default)]
struct FieldValue {
    value: Option<(String, &'static str)>,
    /// Offered by the body (or its `customData`).
    in_body: bool,
    /// Offered by the path or the query string.
    outside_body: bool,
}

#[derive(Debug, Default)]
struct Fields {
    location: FieldValue,
    csv: FieldValue,
    user: FieldValue,
}

impl Fields {
    fn field(&mut self, name: Name) -> &mut FieldValue {
        match name {
            Name::Location => &mut self.location,
            Name::Csv => &mut self.csv,
            Name::User => &mut self.user,
        }
    }

    /// Records a string value for `name` from `origin`, checking it and any earlier value.
    fn offer_str(&mut self, name: Name, origin: &'static str, value: &str) -> Result<(), Error> {
        let field = name.field();
        check_id(value)
            .map_err(|e| Error::invalid_field(field, format!("{field} in the {origin} {e}")))?;
        let found = self.field(name);
        if origin.starts_with("body") {
            found.in_body = true;
        } else {
            found.outside_body = true;
        }
        match &found.value {
            Some((earlier, _)) if earlier == value => Ok(()),
            Some((_, earlier_origin)) => Err(Error::invalid_field(
                field,
                format!("{field} differs between the {earlier_origin} and the {origin}"),
            )),
            None => {
                found.value = Some((value.to_owned(), origin));
                Ok(())
            }
        }
    }

    /// Records a JSON value: `null` is absent, a string is checked, anything else is a 400.
    fn offer_json(&mut self, name: Name, origin: &'static str, value: &Value) -> Result<(), Error> {
        let field = name.field();
        match value {
            Value::Null => Ok(()),
            Value::String(s) => self.offer_str(name, origin, s),
            Value::Number(_) => Err(Error::invalid_field(
                field,
                format!("{field} in the {origin} must be a string, not a number"),
            )),
            _ => Err(Error::invalid_field(
                field,
                format!("{field} in the {origin} must be a string"),
            )),
        }
    }

    fn finish(self) -> Result<FinalizeRequest, Error> {
        let missing = |name: Name| {
            let field = name.field();
            Error::invalid_field(
                field,
                format!("{field} is required (path, query string, or body)"),
            )
        };
        // Values were checked by `offer_str`; parsing again cannot fail, but is not unwrapped.
        let parse_error = |name: Name| Error::invalid_field(name.field(), "invalid id");
        let (location, _) = self.location.value.ok_or_else(|| missing(Name::Location))?;
        let (csv, _) = self.csv.value.ok_or_else(|| missing(Name::Csv))?;
        Ok(FinalizeRequest {
            location_id: LocationId::parse(&location).map_err(|_| parse_error(Name::Location))?,
            csv_id: CsvId::parse(&csv).map_err(|_| parse_error(Name::Csv))?,
            user_id: self
                .user
                .value
                .map(|(user, _)| UserId::parse(&user).map_err(|_| parse_error(Name::User)))
                .transpose()?,
        })
    }
}

fn offer_path(fields: &mut Fields, params: &[(&str, &str)], path: &str) -> Result<(), Error> {
    const ORIGIN: &str = "path";
    let mut found = false;
    for (key, value) in params {
        let name = match *key {
            "locationId" => Name::Location,
            "csvId" => Name::Csv,
            _ => continue,
        };
        found = true;
        fields.offer_str(name, ORIGIN, value)?;
    }
    if found {
        return Ok(());
    }
    if let Some((location, csv)) = ids_in_path(path) {
        fields.offer_str(Name::Location, ORIGIN, location)?;
        fields.offer_str(Name::Csv, ORIGIN, csv)?;
    }
    Ok(())
}

/// Finds `…/locations/{l}/csv/{c}/finalize` at the end of a raw path.
fn ids_in_path(path: &str) -> Option<(&str, &str)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        [.., "locations", location, "csv", csv, "finalize"] => Some((location, csv)),
        _ => None,
    }
}

fn offer_query(fields: &mut Fields, query: &str) -> Result<(), Error> {
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let name = match key.as_ref() {
            "locationId" => Name::Location,
            "csvId" => Name::Csv,
            "userId" => Name::User,
            _ => continue,
        };
        fields.offer_str(name, "query string", &value)?;
    }
    Ok(())
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_body(format!(
            "body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Error::invalid_body("body must be a JSON object")),
    }
}

/// Reads a urlencoded form into the same shape as a JSON body, so one extractor serves both.
/// `location.id` / `location[id]` and `customData.x` / `customData[x]` become nested objects.
fn form_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::invalid_body("form body is not valid UTF-8"))?;
    let mut root = Map::new();
    for (key, value) in url::form_urlencoded::parse(text.as_bytes()) {
        let (parent, child) = split_form_key(&key);
        let target = match parent {
            None => &mut root,
            Some(parent) => match root
                .entry(parent.to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
            {
                Value::Object(map) => map,
                _ => {
                    return Err(Error::invalid_body(format!(
                        "form field {parent} is given both as a value and as an object"
                    )))
                }
            },
        };
        match target.get(child) {
            Some(Value::String(earlier)) if *earlier == value => {}
            Some(_) => {
                let field = Name::from_alias(child).map(Name::field);
                return Err(Error::InvalidRequest {
                    field,
                    message: format!(
                        "form field {key} is given more than once with different values"
                    ),
                });
            }
            None => {
                target.insert(child.to_owned(), Value::String(value.into_owned()));
            }
        }
    }
    Ok(root)
}

/// Splits `a.b` or `a[b]` into `(Some(a), b)` for the nested keys the contract names.
fn split_form_key(key: &str) -> (Option<&str>, &str) {
    for parent in ["location", "customData"] {
        if let Some(rest) = key.strip_prefix(parent) {
            if let Some(child) = rest.strip_prefix('.') {
                return (Some(parent), child);
            }
            if let Some(child) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                return (Some(parent), child);
            }
        }
    }
    (None, key)
}

fn offer_body(fields: &mut Fields, body: &Map<String, Value>) -> Result<(), Error> {
    offer_object(fields, body, "body")?;
    match body.get("customData") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(custom)) => offer_object(fields, custom, "body's customData"),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(()),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(custom)) => offer_object(fields, &custom, "body's customData"),
            Ok(Value::Null) => Ok(()),
            _ => Err(Error::invalid_field(
                "customData",
                "customData must be an object or a JSON-encoded object",
            )),
        },
        Some(_) => Err(Error::invalid_field(
            "customData",
            "customData must be an object or a JSON-encoded object",
        )),
    }
}

/// Offers every alias found in one JSON object, including HighLevel's nested `location.id`.
fn offer_object(
    fields: &mut Fields,
    object: &Map<String, Value>,
    origin: &'static str,
) -> Result<(), Error> {
    for (key, value) in object {
        if let Some(name) = Name::from_alias(key) {
            fields.offer_json(name, origin, value)?;
        }
    }
    if let Some(Value::Object(location)) = object.get("location") {
        if let Some(id) = location.get("id") {
            fields.offer_json(Name::Location, origin, id)?;
        }
    }
    Ok(())
}

/// The header that may name a completion callback (unsigned requests only).
pub const CALLBACK_URL_HEADER: &str = "x-callback-url";

/// The completion callback a finalize request names, as given: the body's `callbackUrl` (or its
/// `customData`'s), or the `X-Callback-Url` header; the same value from several places is one,
/// different values a 400. A `signed` request's callback must be in its signed body: a header
/// naming another (or one the body lacks) is a 400, so a captured signed request cannot be
/// pointed at another receiver. Its shape and host are checked later (`Callbacks::admit`).
pub fn callback_url(
    body: &[u8],
    kind: BodyKind,
    headers: &HeaderMap,
    signed: bool,
) -> Result<Option<String>, Error> {
    let field = crate::request::callback::CallbackUrl::FIELD;
    let refuse = |message: &str| Error::invalid_field(field, message);
    let header = match headers.get(CALLBACK_URL_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| refuse("the X-Callback-Url header must be visible ASCII"))?
                .trim()
                .to_owned(),
        ),
    };
    // Most requests name none: their body is not read twice.
    let mentioned = body.windows(field.len()).any(|w| w == field.as_bytes());
    let mut found: Vec<String> = Vec::new();
    if mentioned && kind != BodyKind::Empty {
        let object = match kind {
            BodyKind::Json => json_object(body)?,
            _ => form_object(body)?,
        };
        let custom = match object.get("customData") {
            Some(Value::Object(custom)) => Some(custom.clone()),
            Some(Value::String(text)) => serde_json::from_str::<Map<String, Value>>(text).ok(),
            _ => None,
        };
        for place in std::iter::once(&object).chain(custom.as_ref()) {
            match place.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(url)) => found.push(url.trim().to_owned()),
                Some(_) => return Err(refuse("callbackUrl must be a string")),
            }
        }
    }
    if signed && header.as_ref().is_some_and(|h| !found.contains(h)) {
        return Err(refuse(
            "callbackUrl must be in the signed body: the signature covers only the body",
        ));
    }
    found.extend(header);
    match found.split_first() {
        None => Ok(None),
        Some((first, rest)) if rest.iter().all(|other| other == first) => Ok(Some(first.clone())),
        Some(_) => Err(refuse(
            "callbackUrl differs between the places that name it",
        )),
    }
}

/// Whether a status route asks for the import to be read now (`?refresh=true`).
pub fn wants_refresh(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .any(|(name, value)| name == "refresh" && value == "true")
    })
}

/// The request's idempotency key: its `webhook-id` header, else its `Idempotency-Key` header,
/// else its csvId. A key header that is not 1–255 visible ASCII characters is a 400 naming it.
pub fn idempotency_key(
    request: &FinalizeRequest,
    headers: &HeaderMap,
) -> Result<IdempotencyKey, Error> {
    for kind in [KeyKind::WebhookId, KeyKind::IdempotencyKey] {
        let Some(header) = kind.header() else {
            continue;
        };
        if let Some(value) = headers.get(header) {
            return value
                .to_str()
                .ok()
                .and_then(|text| IdempotencyKey::parse(kind, text))
                .ok_or_else(|| {
                    Error::invalid_field(
                        header,
                        "an idempotency key must be 1 to 255 visible ASCII characters",
                    )
                });
        }
    }
    Ok(IdempotencyKey::csv(&request.csv_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from_json(body: Value) -> Result<FinalizeRequest, Error> {
        let bytes = serde_json::to_vec(&body).unwrap();
        parse(Sources {
            path_params: &[],
            path: "/finalize",
            query: None,
            body: &bytes,
            kind: BodyKind::Json,
        })
    }

    fn from_form(body: &str) -> Result<FinalizeRequest, Error> {
        parse(Sources {
            path_params: &[],
            path: "/finalize",
            query: None,
            body: body.as_bytes(),
            kind: BodyKind::Form,
        })
    }

    fn field_of(result: Result<FinalizeRequest, Error>) -> Option<&'static str> {
        match result {
            Err(Error::InvalidRequest { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn routes_post_anywhere_and_get_healthz_only() {
        assert_eq!(route(&Method::POST, "/anything").unwrap(), Route::Finalize);
        assert_eq!(route(&Method::GET, "/healthz").unwrap(), Route::Health);
        assert_eq!(route(&Method::GET, "/Prod/healthz").unwrap(), Route::Health);
        assert!(matches!(
            route(&Method::GET, "/finalize"),
            Err(Error::MethodNotAllowed)
        ));
        assert!(matches!(
            route(&Method::PUT, "/healthz"),
            Err(Error::MethodNotAllowed)
        ));
        assert!(matches!(
            route(&Method::DELETE, "/x"),
            Err(Error::MethodNotAllowed)
        ));
    }

    #[test]
    fn routes_get_on_a_finalization_to_the_status_route() {
        assert_eq!(
            route(&Method::GET, "/Prod/finalizations/fz_1/").unwrap(),
            Route::Finalization("fz_1")
        );
        for path in [
            "/finalizations",
            "/finalizations/",
            "/myfinalizations/fz_1",
            "/finalizations/fz_1/x",
        ] {
            assert!(route(&Method::GET, path).is_err(), "{path}");
        }
        assert_eq!(
            route(&Method::POST, "/finalizations/fz_1").unwrap(),
            Route::Finalize
        );
    }

    #[test]
    fn rejects_a_body_over_256_kib() {
        assert!(check_body_size(&vec![b' '; MAX_BODY_BYTES]).is_ok());
        assert!(matches!(
            check_body_size(&vec![b' '; MAX_BODY_BYTES + 1]),
            Err(Error::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn accepts_json_and_forms_with_parameters_and_rejects_other_types() {
        let ct = |v: &'static str| HeaderValue::from_static(v);
        assert_eq!(
            body_kind(Some(&ct("application/json; charset=utf-8")), b"{}").unwrap(),
            BodyKind::Json
        );
        assert_eq!(
            body_kind(Some(&ct("Application/JSON")), b"{}").unwrap(),
            BodyKind::Json
        );
        assert_eq!(
            body_kind(Some(&ct("application/x-www-form-urlencoded")), b"a=b").unwrap(),
            BodyKind::Form
        );
        assert_eq!(body_kind(None, b"").unwrap(), BodyKind::Empty);
        assert_eq!(
            body_kind(Some(&ct("text/plain")), b"").unwrap(),
            BodyKind::Empty
        );
        assert!(matches!(
            body_kind(None, b"{}"),
            Err(Error::UnsupportedMediaType)
        ));
        assert!(matches!(
            body_kind(Some(&ct("text/plain")), b"{}"),
            Err(Error::UnsupportedMediaType)
        ));
        assert!(matches!(
            body_kind(Some(&ct("multipart/form-data")), b"x"),
            Err(Error::UnsupportedMediaType)
        ));
    }

    #[test]
    fn reads_plain_json_fields() {
        let req = from_json(json!({"locationId": "L1", "csvId": "C1", "userId": "U1"})).unwrap();
        assert_eq!(req.location_id.as_str(), "L1");
        assert_eq!(req.csv_id.as_str(), "C1");
        assert_eq!(req.user_id.unwrap().as_str(), "U1");
    }

    #[test]
    fn reads_snake_case_aliases_and_nested_location_id() {
        let req = from_json(
            json!({"location": {"id": "L1", "name": "Shop"}, "csv_id": "C1", "user_id": "U1"}),
        )
        .unwrap();
        assert_eq!(req.location_id.as_str(), "L1");
        assert_eq!(req.user_id.unwrap().as_str(), "U1");
        let req = from_json(json!({"location_id": "L2", "csvId": "C1"})).unwrap();
        assert_eq!(req.location_id.as_str(), "L2");
    }

    #[test]
    fn reads_custom_data_as_an_object_or_a_json_string() {
        let req =
            from_json(json!({"location": {"id": "L1"}, "customData": {"csvId": "C1"}})).unwrap();
        assert_eq!(req.csv_id.as_str(), "C1");
        let req =
            from_json(json!({"customData": "{\"locationId\":\"L1\",\"csv_id\":\"C2\"}"})).unwrap();
        assert_eq!(req.csv_id.as_str(), "C2");
        let req = from_json(json!({"locationId": "L1", "csvId": "C1", "customData": ""})).unwrap();
        assert_eq!(req.csv_id.as_str(), "C1");
    }

    #[test]
    fn rejects_custom_data_that_is_not_an_object() {
        assert_eq!(
            field_of(from_json(json!({"customData": "not json"}))),
            Some("customData")
        );
        assert_eq!(
            field_of(from_json(json!({"customData": [1]}))),
            Some("customData")
        );
        assert_eq!(
            field_of(from_json(json!({"customData": "[1]"}))),
            Some("customData")
        );
    }

    #[test]
    fn agrees_when_the_same_value_comes_from_several_places() {
        let req = from_json(
            json!({"locationId": "L1", "location": {"id": "L1"}, "csvId": "C1",
                                   "customData": {"csvId": "C1", "location_id": "L1"}}),
        )
        .unwrap();
        assert_eq!(req.location_id.as_str(), "L1");
    }

    #[test]
    fn rejects_conflicting_values_naming_the_field() {
        assert_eq!(
            field_of(from_json(
                json!({"locationId": "L1", "location": {"id": "L2"}, "csvId": "C"})
            )),
            Some("locationId")
        );
        assert_eq!(
            field_of(from_json(
                json!({"locationId": "L", "csvId": "C1", "csv_id": "C2"})
            )),
            Some("csvId")
        );
        assert_eq!(
            field_of(from_json(
                json!({"locationId": "L", "csvId": "C1", "customData": {"csvId": "C2"}})
            )),
            Some("csvId")
        );
        assert_eq!(
            field_of(from_json(
                json!({"locationId": "L", "csvId": "C", "userId": "U1", "customData": "{\"user_id\":\"U2\"}"})
            )),
            Some("userId")
        );
    }

    #[test]
    fn rejects_conflicts_between_path_query_and_body() {
        let body = serde_json::to_vec(&json!({"csvId": "C2"})).unwrap();
        let result = parse(Sources {
            path_params: &[("locationId", "L1"), ("csvId", "C1")],
            path: "/locations/L1/csv/C1/finalize",
            query: None,
            body: &body,
            kind: BodyKind::Json,
        });
        assert_eq!(field_of(result), Some("csvId"));
        let result = parse(Sources {
            path_params: &[("locationId", "L1"), ("csvId", "C1")],
            path: "/x",
            query: Some("locationId=L9"),
            body: b"",
            kind: BodyKind::Empty,
        });
        assert_eq!(field_of(result), Some("locationId"));
    }

    #[test]
    fn reads_ids_from_the_query_string_and_the_raw_path() {
        let req = parse(Sources {
            path_params: &[],
            path: "/fn/locations/L1/csv/C1/finalize",
            query: Some("userId=U1&other=x"),
            body: b"",
            kind: BodyKind::Empty,
        })
        .unwrap();
        assert_eq!(
            (req.location_id.as_str(), req.csv_id.as_str()),
            ("L1", "C1")
        );
        assert_eq!(req.user_id.unwrap().as_str(), "U1");
    }

    #[test]
    fn rejects_a_percent_encoded_slash_in_the_raw_path() {
        let result = parse(Sources {
            path_params: &[],
            path: "/locations/L1/csv/a%2F..%2Fb/finalize",
            query: None,
            body: b"",
            kind: BodyKind::Empty,
        });
        assert_eq!(field_of(result), Some("csvId"));
    }

    #[test]
    fn rejects_hostile_and_mistyped_ids_naming_the_field() {
        for bad in [
            json!(""),
            json!("a/b"),
            json!("../x"),
            json!("a.b"),
            json!("a%2F"),
            json!("a b"),
            json!("é"),
            json!(42),
            json!(true),
            json!({"id": "x"}),
            json!(["x"]),
            json!("x".repeat(65)),
        ] {
            assert_eq!(
                field_of(from_json(json!({"locationId": "L1", "csvId": bad}))),
                Some("csvId"),
                "{bad}"
            );
        }
        assert_eq!(
            field_of(from_json(json!({"location": {"id": 7}, "csvId": "C"}))),
            Some("locationId")
        );
        assert_eq!(
            field_of(from_json(
                json!({"locationId": "L", "csvId": "C", "userId": "u/1"})
            )),
            Some("userId")
        );
    }

    #[test]
    fn treats_null_as_absent_but_empty_as_invalid() {
        let req =
            from_json(json!({"locationId": "L1", "csvId": "C1", "userId": null, "csv_id": null}))
                .unwrap();
        assert!(req.user_id.is_none());
        assert_eq!(
            field_of(from_json(
                json!({"locationId": "L1", "csvId": "C1", "userId": ""})
            )),
            Some("userId")
        );
    }

    #[test]
    fn names_the_missing_field() {
        assert_eq!(
            field_of(from_json(json!({"csvId": "C1"}))),
            Some("locationId")
        );
        assert_eq!(
            field_of(from_json(json!({"locationId": "L1"}))),
            Some("csvId")
        );
    }

    #[test]
    fn rejects_malformed_json_and_non_objects_without_a_field() {
        for body in [&b"{"[..], b"[1,2]", b"\"x\"", b"null", b"{\"a\":1}x"] {
            let result = parse(Sources {
                path_params: &[],
                path: "/",
                query: None,
                body,
                kind: BodyKind::Json,
            });
            assert_eq!(field_of(result), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn reads_forms_with_aliases_nesting_and_custom_data() {
        let req = from_form("location_id=L1&csvId=C1&user_id=U1").unwrap();
        assert_eq!(
            (req.location_id.as_str(), req.csv_id.as_str()),
            ("L1", "C1")
        );
        let req = from_form("location%5Bid%5D=L1&customData%5BcsvId%5D=C1").unwrap();
        assert_eq!(
            (req.location_id.as_str(), req.csv_id.as_str()),
            ("L1", "C1")
        );
        let req = from_form("location.id=L1&customData=%7B%22csvId%22%3A%22C3%22%7D").unwrap();
        assert_eq!(req.csv_id.as_str(), "C3");
    }

    #[test]
    fn rejects_a_form_field_repeated_with_different_values() {
        assert_eq!(
            field_of(from_form("locationId=L1&csvId=C1&csvId=C2")),
            Some("csvId")
        );
        assert!(from_form("locationId=L1&csvId=C1&csvId=C1").is_ok());
    }

    #[test]
    fn rejects_a_form_that_is_not_utf8() {
        let result = parse(Sources {
            path_params: &[],
            path: "/",
            query: None,
            body: b"csvId=\xff",
            kind: BodyKind::Form,
        });
        assert_eq!(field_of(result), None);
    }

    fn keyed(headers: &[(&'static str, &str)]) -> Result<IdempotencyKey, Error> {
        let request = from_json(json!({"locationId": "L1", "csvId": "C1"})).unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.insert(*name, value);
            }
        }
        idempotency_key(&request, &map)
    }

    #[test]
    fn the_key_comes_from_webhook_id_then_idempotency_key_then_the_csv_id() {
        let key = keyed(&[]).unwrap();
        assert_eq!((key.kind(), key.as_str()), (KeyKind::CsvId, "C1"));
        let key = keyed(&[("idempotency-key", "k-1")]).unwrap();
        assert_eq!((key.kind(), key.as_str()), (KeyKind::IdempotencyKey, "k-1"));
        let key = keyed(&[("idempotency-key", "k-1"), ("webhook-id", "msg_1")]).unwrap();
        assert_eq!((key.kind(), key.as_str()), (KeyKind::WebhookId, "msg_1"));
    }

    #[test]
    fn refuses_a_key_header_that_is_empty_too_long_or_not_visible_ascii() {
        for bad in ["", " ", &"k".repeat(256), "a b", "é"] {
            for header in ["idempotency-key", "webhook-id"] {
                if HeaderValue::from_str(bad).is_ok() {
                    let error = keyed(&[(header, bad)]).unwrap_err();
                    let named = if header == "webhook-id" {
                        "webhook-id"
                    } else {
                        "Idempotency-Key"
                    };
                    assert_eq!(error.field(), Some(named), "{header}: {bad:?}");
                }
            }
        }
        assert!(keyed(&[("idempotency-key", &"k".repeat(255))]).is_ok());
    }

    fn callback(body: Value, header: Option<&str>, signed: bool) -> Result<Option<String>, Error> {
        let mut headers = HeaderMap::new();
        if let Some(header) = header {
            headers.insert(CALLBACK_URL_HEADER, header.parse().unwrap());
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        callback_url(&bytes, BodyKind::Json, &headers, signed)
    }

    #[test]
    fn reads_a_callback_url_from_the_body_custom_data_or_the_header() {
        let url = "https://hooks.example.com/cb";
        let some = Some(url.to_owned());
        assert_eq!(
            callback(json!({"callbackUrl": url}), None, false).unwrap(),
            some
        );
        assert_eq!(
            callback(json!({"customData": {"callbackUrl": url}}), None, false).unwrap(),
            some
        );
        let encoded = json!({"callbackUrl": url}).to_string();
        assert_eq!(
            callback(json!({"customData": encoded}), None, false).unwrap(),
            some
        );
        assert_eq!(
            callback(json!({"csvId": "C1"}), Some(url), false).unwrap(),
            some
        );
        assert_eq!(
            callback(json!({"callbackUrl": url}), Some(url), true).unwrap(),
            some
        );
        assert_eq!(
            callback(json!({"callbackUrl": null}), None, false).unwrap(),
            None
        );
        assert_eq!(callback(json!({"csvId": "C1"}), None, false).unwrap(), None);
    }

    #[test]
    fn refuses_a_callback_url_that_differs_is_not_a_string_or_is_unsigned() {
        let field = |r: Result<Option<String>, Error>| r.unwrap_err().field();
        let (a, b) = ("https://a.example.com/", "https://b.example.com/");
        assert_eq!(
            field(callback(json!({"callbackUrl": a}), Some(b), false)),
            Some("callbackUrl")
        );
        assert_eq!(
            field(callback(
                json!({"callbackUrl": a, "customData": {"callbackUrl": b}}),
                None,
                false
            )),
            Some("callbackUrl")
        );
        assert_eq!(
            field(callback(json!({"callbackUrl": 7}), None, false)),
            Some("callbackUrl")
        );
        assert_eq!(
            field(callback(json!({"csvId": "C1"}), Some(a), true)),
            Some("callbackUrl"),
            "a signed request's callback is in its signed body"
        );
        assert_eq!(
            field(callback(json!({"callbackUrl": a}), Some(b), true)),
            Some("callbackUrl")
        );
    }

    #[test]
    fn a_status_route_asks_for_a_refresh_with_refresh_true_only() {
        assert!(wants_refresh(Some("refresh=true")));
        assert!(wants_refresh(Some("a=b&refresh=true")));
        for other in [
            None,
            Some(""),
            Some("refresh=1"),
            Some("refresh=TRUE"),
            Some("refreshed=true"),
        ] {
            assert!(!wants_refresh(other), "{other:?}");
        }
    }
}
