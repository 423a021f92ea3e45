//! The `{locationId}` secret-name template: substituting a location, and confining what the
//! caller's id can reach.
//!
//! With a template the caller's (validated) id picks which secret is read, so a template must
//! not be able to name any secret that is not a token secret: it needs fixed text on at least
//! one side of the placeholder, and no id may turn it into the inbound-auth secret's name.

use crate::request::ids::{check_id, LocationId, MAX_ID_LEN};

/// The placeholder that selects one secret per location.
pub const LOCATION_PLACEHOLDER: &str = "{locationId}";

/// Substitutes the location into a secret-id template. The id was validated, so the result
/// names exactly one secret.
pub fn resolve(secret_id: &str, location: &LocationId) -> String {
    secret_id.replace(LOCATION_PLACEHOLDER, location.as_str())
}

/// Checks a token-secret template against the secrets it must never reach; the error says why,
/// naming no secret value (names and ARNs only).
pub fn confine(template: &str, other_secrets: &[&str]) -> Result<(), String> {
    if !template.contains(LOCATION_PLACEHOLDER) {
        return Ok(());
    }
    let parts: Vec<&str> = template.split(LOCATION_PLACEHOLDER).collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if first.is_empty() && last.is_empty() {
        return Err(format!(
            "needs fixed text before or after {LOCATION_PLACEHOLDER} (e.g. ghl/{LOCATION_PLACEHOLDER}/token), \
             or a caller's id alone would name the secret to read"
        ));
    }
    // The deployment grants the template with each placeholder as IAM's `*`, which also
    // matches `/`: a name no id can produce may still be granted (`ghl/*` reaches
    // `ghl/auth/inbound`).
    let granted = name_of(template).replace(LOCATION_PLACEHOLDER, "*");
    for other in other_secrets {
        let other_name = name_of(other);
        if could_produce(&name_of(template), &other_name)
            || could_produce(&name_of(template), without_arn_suffix(&other_name))
        {
            return Err(format!(
                "could produce the name of {other} for some locationId; choose a template no \
                 location id can turn into another secret (e.g. ghl/{LOCATION_PLACEHOLDER}/token)"
            ));
        }
        if iam_matches(&granted, &other_name)
            || iam_matches(&granted, without_arn_suffix(&other_name))
        {
            return Err(format!(
                "as an IAM resource pattern ({granted}) it also matches {other}, so the function \
                 would be allowed to read it; choose a template whose fixed text sets it apart \
                 (e.g. ghl/{LOCATION_PLACEHOLDER}/token)"
            ));
        }
    }
    Ok(())
}

/// Whether IAM's resource pattern `pattern` (`*`: any run of characters, `/` included; `?`:
/// any one character) matches `name`.
fn iam_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    // The classic two-pointer wildcard match: on a mismatch, let the last `*` take one more
    // character.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The secret name of a name or ARN (`arn:…:secret:NAME`).
fn name_of(id: &str) -> String {
    match id.split_once(":secret:") {
        Some((arn, name)) if arn.starts_with("arn:") => name.to_owned(),
        _ => id.to_owned(),
    }
}

/// A full ARN's name ends in `-` and six random characters; the secret's own name does not.
fn without_arn_suffix(name: &str) -> &str {
    match name.len().checked_sub(7) {
        Some(cut) if name.as_bytes()[cut] == b'-' && name.is_char_boundary(cut) => &name[..cut],
        _ => name,
    }
}

/// True when some valid location id, put in every placeholder of `template`, gives `name`.
fn could_produce(template: &str, name: &str) -> bool {
    let parts: Vec<&str> = template.split(LOCATION_PLACEHOLDER).collect();
    let slots = parts.len() - 1;
    let fixed: usize = parts.iter().map(|p| p.len()).sum();
    let Some(variable) = name.len().checked_sub(fixed) else {
        return false;
    };
    if slots == 0 || variable % slots != 0 {
        return false;
    }
    let id_len = variable / slots;
    if !(1..=MAX_ID_LEN).contains(&id_len) || !name.starts_with(parts[0]) {
        return false;
    }
    let Some(id) = name.get(parts[0].len()..parts[0].len() + id_len) else {
        return false;
    };
    check_id(id).is_ok() && template.replace(LOCATION_PLACEHOLDER, id) == name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_location_placeholder() {
        let location = LocationId::parse("L1").unwrap();
        assert_eq!(resolve("ghl/{locationId}/token", &location), "ghl/L1/token");
        assert_eq!(resolve("ghl/token", &location), "ghl/token");
    }

    #[test]
    fn accepts_templates_that_cannot_reach_the_auth_secret() {
        for (template, auth) in [
            ("ghl/{locationId}/token", "ghl/inbound-auth"),
            ("ghl/token", "ghl/inbound-auth"),
            ("ghl-token-{locationId}", "ghl/inbound-auth"),
            ("{locationId}/ghl-token", "ghl-csv-finalize/inbound-auth"),
            (
                "ghl/{locationId}/token",
                "arn:aws:secretsmanager:us-east-1:1:secret:ghl/inbound-AbCdEf",
            ),
        ] {
            assert_eq!(confine(template, &[auth]), Ok(()), "{template} vs {auth}");
        }
    }

    #[test]
    fn refuses_a_placeholder_without_fixed_text() {
        assert!(confine("{locationId}", &[]).is_err());
        assert!(confine("{locationId}{locationId}", &[]).is_err());
    }

    #[test]
    fn refuses_templates_that_could_name_the_auth_secret() {
        for (template, auth) in [
            ("ghl/{locationId}", "ghl/inbound-auth"),
            (
                "ghl-csv-finalize/{locationId}",
                "ghl-csv-finalize/inbound-auth",
            ),
            ("{locationId}-auth", "ghl-inbound-auth"),
            ("ghl/{locationId}/{locationId}", "ghl/x/x"),
            (
                "ghl/{locationId}",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:ghl/inbound-AbCdEf",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:ghl/{locationId}",
                "ghl/inbound",
            ),
        ] {
            assert!(confine(template, &[auth]).is_err(), "{template} vs {auth}");
        }
        // Beyond an id's reach (a slash, more than 64 characters) but not IAM's: IAM's `*`
        // matches them all, so the deployment would grant them.
        for auth in [
            "ghl/a/b",
            "ghl/auth/inbound",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ghl/auth/inbound-AbCdEf",
            &format!("ghl/{}", "a".repeat(65)),
        ] {
            let refused = confine("ghl/{locationId}", &[auth]).unwrap_err();
            assert!(refused.contains("IAM"), "{auth}: {refused}");
        }
        assert!(confine("ghl/{locationId}/token", &["ghl/auth/inbound/token"]).is_err());
    }

    #[test]
    fn matches_names_as_iam_reads_a_resource_pattern() {
        for (pattern, name) in [
            ("ghl/*", "ghl/auth/inbound"),
            ("ghl/*/token", "ghl/a/b/token"),
            ("*", ""),
            ("a?c", "abc"),
            ("*-??????", "name-AbCdEf"),
            ("a*b*c", "aXbYbZc"),
        ] {
            assert!(iam_matches(pattern, name), "{pattern} {name}");
        }
        for (pattern, name) in [
            ("ghl/*/token", "ghl/inbound-auth"),
            ("a?c", "ac"),
            ("ghl/*", "gh/x"),
            ("a*b", "aXc"),
        ] {
            assert!(!iam_matches(pattern, name), "{pattern} {name}");
        }
    }
}
