//! Where a finished import is reported: the completion callback's URL, and which addresses a
//! callback may never reach (pure).
//!
//! A callback URL is an outbound request a caller chooses, so it is checked twice over:
//! [`CallbackUrl::parse`] reads its shape (`https`, at most 2048 characters, a host, no user
//! name or password), and [`Reach`] decides whether its host may be called — an address
//! literal at once, a name by every address it resolves to ([`Reach::admits_address`], which
//! the connecting side applies to the address it actually connects to).
//!
//! ```
//! use ghl_csv_finalize::request::callback::{CallbackUrl, Reach};
//!
//! let public = Reach { allow_private: false };
//! assert!(CallbackUrl::parse("https://hooks.example.com/done", public).is_ok());
//! assert!(CallbackUrl::parse("http://hooks.example.com/done", public).is_err());
//! assert!(CallbackUrl::parse("https://169.254.169.254/latest/meta-data", public).is_err());
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longest callback URL accepted, in characters.
pub const MAX_CALLBACK_URL_LEN: usize = 2048;

/// Which addresses a callback may reach (by default: public ones only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// `CALLBACK_ALLOW_PRIVATE=true` (local tests only): private and loopback addresses are
    /// admitted, and `http` to a loopback host.
    pub allow_private: bool,
}

impl Reach {
    /// Whether a callback may connect to `address`: never a loopback, private, link-local (the
    /// instance metadata address included), unique-local, multicast, unspecified or otherwise
    /// non-public address, unless private addresses are allowed.
    pub fn admits_address(self, address: IpAddr) -> bool {
        self.allow_private || is_public(address)
    }
}

/// A callback URL of the right shape; whether its host may be reached is checked again on every
/// delivery. Holds the caller's URL, which may carry the caller's own secret in its path or
/// query: its `Debug` and `Display` show only the scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackUrl(Url);

impl CallbackUrl {
    /// The field that names it.
    pub const FIELD: &'static str = "callbackUrl";

    /// Parses a callback URL as `reach` allows it. The error says what is wrong without quoting
    /// the URL.
    pub fn parse(text: &str, reach: Reach) -> Result<Self, &'static str> {
        if text.chars().count() > MAX_CALLBACK_URL_LEN {
            return Err("must be at most 2048 characters");
        }
        let url = Url::parse(text.trim()).map_err(|_| "must be an absolute https URL")?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password");
        }
        let host = url.host().ok_or("must name a host")?;
        let loopback_host = match &host {
            Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
            Host::Ipv4(v4) => v4.is_loopback(),
            Host::Ipv6(v6) => v6.is_loopback(),
        };
        match url.scheme() {
            "https" => {}
            "http" if reach.allow_private && loopback_host => {}
            _ => return Err("must be an https URL"),
        }
        if let Some(address) = literal(&host) {
            if !reach.admits_address(address) {
                return Err("must not point at a loopback, private, link-local, unique-local, multicast or unspecified address");
            }
        }
        Ok(Self(url))
    }

    /// A URL as a record or a message stored it, checked for its shape only: whether it may be
    /// reached is decided again on every delivery.
    pub fn stored(text: &str) -> Option<Self> {
        Self::parse(
            text,
            Reach {
                allow_private: true,
            },
        )
        .ok()
    }

    /// The URL to call.
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// The URL as stored on a record or a message.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Its host, lower case, as a `callbackHosts` list names it.
    pub fn host(&self) -> String {
        self.0.host_str().unwrap_or_default().to_ascii_lowercase()
    }

    /// Its host as an address, when the URL names one rather than a name.
    pub fn address(&self) -> Option<IpAddr> {
        self.0.host().as_ref().and_then(literal)
    }
}

impl fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackUrl({self})")
    }
}

impl fmt::Display for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/…", self.0.scheme(), self.host())
    }
}

/// What a completion callback reports: its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    /// `csv.import.completed`: the import ended `completed`.
    ImportCompleted,
    /// `csv.import.failed`: the import ended `failed` (or was deleted).
    ImportFailed,
    /// `csv.import.timed_out`: the import had not ended when following it stopped.
    ImportTimedOut,
    /// `csv.finalize.failed`: the finalize itself failed for good.
    FinalizeFailed,
}

impl CallbackKind {
    const ALL: [Self; 4] = [
        Self::ImportCompleted,
        Self::ImportFailed,
        Self::ImportTimedOut,
        Self::FinalizeFailed,
    ];

    /// As the callback's `type` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImportCompleted => "csv.import.completed",
            Self::ImportFailed => "csv.import.failed",
            Self::ImportTimedOut => "csv.import.timed_out",
            Self::FinalizeFailed => "csv.finalize.failed",
        }
    }

    /// From its `type`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// What the end of an import in `status` reports (`completed`, `failed`, `deleted`,
    /// `timed_out`); `None` while it has not ended.
    pub fn of_import(status: &str) -> Option<Self> {
        match status {
            "completed" => Some(Self::ImportCompleted),
            "failed" | "deleted" => Some(Self::ImportFailed),
            "timed_out" => Some(Self::ImportTimedOut),
            _ => None,
        }
    }
}

/// Whether `host` is allowed by a `callbackHosts` list: the same name, or under a `*.` entry.
pub fn host_listed(host: &str, listed: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    listed.iter().any(|entry| match entry.strip_prefix("*.") {
        Some(parent) => host
            .strip_suffix(parent)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => host == *entry,
    })
}

fn literal(host: &Host<&str>) -> Option<IpAddr> {
    match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        Host::Domain(_) => None,
    }
}

/// Whether `address` is a public unicast address.
fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(v4.is_unspecified()
        || a == 0 // "this network"
        || v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local() // 169.254.0.0/16, the instance metadata address among them
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
        || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || v4.is_documentation()
        || v4.is_multicast()
        || a >= 240) // reserved, and the broadcast address
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    !(v6.is_unspecified()
        || v6.is_loopback()
        || v6.is_multicast() // ff00::/8
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (first == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`)
/// or NAT64 (`64:ff9b::a.b.c.d`) address: such an address reaches that IPv4 host.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(tail),
        [0, 0, 0, 0, 0, 0, ..] if !v6.is_unspecified() && !v6.is_loopback() => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(tail),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: Reach = Reach {
        allow_private: false,
    };
    const PRIVATE_OK: Reach = Reach {
        allow_private: true,
    };

    fn refused(text: &str) -> bool {
        CallbackUrl::parse(text, PUBLIC).is_err()
    }

    #[test]
    fn admits_a_public_https_url_and_keeps_its_path_and_query() {
        let url = CallbackUrl::parse("https://Hooks.Example.com:8443/cb?x=1", PUBLIC).unwrap();
        assert_eq!(url.as_str(), "https://hooks.example.com:8443/cb?x=1");
        assert_eq!(url.host(), "hooks.example.com");
        assert!(CallbackUrl::parse("https://93.184.216.34/cb", PUBLIC).is_ok());
        assert!(CallbackUrl::parse("https://[2606:2800:220:1::1]/cb", PUBLIC).is_ok());
    }

    #[test]
    fn refuses_every_non_public_ipv4_class() {
        for address in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
        ] {
            assert!(refused(&format!("https://{address}/cb")), "{address}");
        }
    }

    #[test]
    fn refuses_every_non_public_ipv6_class_and_ipv4_hidden_in_ipv6() {
        for address in [
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::10.0.0.1",
        ] {
            assert!(refused(&format!("https://[{address}]/cb")), "{address}");
        }
        assert!(!refused("https://[::ffff:93.184.216.34]/cb"));
    }

    #[test]
    fn an_ip_written_in_another_form_is_read_as_the_address_it_is() {
        // The URL parser reads these as 127.0.0.1 and 169.254.169.254.
        for text in [
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0251.0376.0251.0376/",
        ] {
            assert!(refused(text), "{text}");
        }
    }

    #[test]
    fn refuses_http_credentials_other_schemes_and_long_urls() {
        assert!(refused("http://hooks.example.com/cb"));
        assert!(refused("ftp://hooks.example.com/cb"));
        assert!(refused("https://user:pw@hooks.example.com/cb"));
        assert!(refused("https://user@hooks.example.com/cb"));
        assert!(refused("/relative"));
        assert!(refused("not a url"));
        assert!(refused(&format!(
            "https://hooks.example.com/{}",
            "a".repeat(2048)
        )));
        assert!(!refused(&format!(
            "https://h.example.com/{}",
            "a".repeat(2048 - 22)
        )));
    }

    #[test]
    fn allowing_private_admits_loopback_and_http_to_loopback_only() {
        assert!(CallbackUrl::parse("http://127.0.0.1:9000/cb", PRIVATE_OK).is_ok());
        assert!(CallbackUrl::parse("http://localhost:9000/cb", PRIVATE_OK).is_ok());
        assert!(CallbackUrl::parse("https://10.0.0.1/cb", PRIVATE_OK).is_ok());
        assert!(CallbackUrl::parse("http://10.0.0.1/cb", PRIVATE_OK).is_err());
        assert!(CallbackUrl::parse("http://hooks.example.com/cb", PRIVATE_OK).is_err());
    }

    #[test]
    fn shows_only_scheme_and_host() {
        let url = CallbackUrl::parse("https://hooks.example.com/cb?token=s3cret", PUBLIC).unwrap();
        assert!(!format!("{url:?} {url}").contains("s3cret"));
    }

    #[test]
    fn callback_kinds_read_back_and_follow_the_imports_end() {
        for kind in CallbackKind::ALL {
            assert_eq!(CallbackKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CallbackKind::parse("csv.import.done"), None);
        assert_eq!(
            CallbackKind::of_import("deleted"),
            Some(CallbackKind::ImportFailed)
        );
        assert_eq!(CallbackKind::of_import("importing"), None);
    }

    #[test]
    fn a_host_list_names_hosts_exactly_or_by_wildcard() {
        let listed = vec!["hooks.example.com".to_owned(), "*.zapier.com".to_owned()];
        assert!(host_listed("hooks.example.com", &listed));
        assert!(host_listed("HOOKS.example.com", &listed));
        assert!(host_listed("a.zapier.com", &listed));
        assert!(host_listed("a.b.zapier.com", &listed));
        assert!(!host_listed("zapier.com", &listed));
        assert!(!host_listed("evilzapier.com", &listed));
        assert!(!host_listed("example.com", &listed));
        assert!(!host_listed("hooks.example.com.evil.net", &listed));
    }
}
