//! Who reported: the client address behind trusted proxies, and the keyed fingerprint that
//! deduplicates reporters without storing who they are.
//!
//! A reporter is identified by `HMAC-SHA256(secret, client address ‖ client_id)`, truncated to
//! 128 bits. The secret never leaves the process, so a fingerprint in Redis cannot be turned
//! back into an address by brute force over the IPv4 space. Raw addresses are neither stored
//! nor logged.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// The HMAC key for reporter fingerprints.
#[derive(Clone)]
pub struct ReporterSecret(SecretSlice<u8>);

impl ReporterSecret {
    /// A secret from configuration (`--reporter-secret`).
    pub fn from_config(secret: &str) -> Self {
        Self(SecretSlice::from(secret.as_bytes().to_vec()))
    }

    /// A fresh random 256-bit secret. Fingerprints made with it stop matching on restart, so
    /// a reporter may be counted again after a restart within its dedup window.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Self(SecretSlice::from(key)))
    }

    /// The fingerprint of a reporter at `addr` with the optional install id `client_id`.
    ///
    /// An IPv6 reporter is identified by its /64 prefix, the block one household or device
    /// gets, so privacy addresses rotating inside it do not make one person many reporters;
    /// an IPv6 address that carries an IPv4 one ([`embedded_ipv4`]) is that IPv4 address.
    /// The hashed input is tagged and length-prefixed, so no (address, id) pair can collide
    /// with another.
    pub fn fingerprint(&self, addr: IpAddr, client_id: Option<&ClientId>) -> Fingerprint {
        self.keyed(|mac| {
            match embedded_ipv4(addr) {
                IpAddr::V4(v4) => {
                    mac.update(b"4");
                    mac.update(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    mac.update(b"6");
                    mac.update(&v6.octets()[..8]);
                }
            }
            if let Some(id) = client_id {
                let len = u16::try_from(id.0.len()).expect("client ids are at most 64 characters");
                mac.update(&len.to_be_bytes());
                mac.update(id.0.as_bytes());
            }
        })
    }

    /// The fingerprint of a client address for the limits per address: the reporter's
    /// without an install id ([`fingerprint`](Self::fingerprint)), but an IPv6 address (not
    /// one carrying an IPv4 address) by its first `v6_prefix` bits when fewer than 64
    /// (`--ipv6-limit-prefix`): a client that holds a /56 or a /48 has 256 or 65,536 /64s.
    pub fn address(&self, addr: IpAddr, v6_prefix: u8) -> Fingerprint {
        match embedded_ipv4(addr) {
            IpAddr::V6(v6) if v6_prefix < 64 => {
                let bits = u32::from(v6_prefix);
                let masked = u128::from(v6) & !(u128::MAX.checked_shr(bits).unwrap_or(0));
                // Tagged apart from the /64s' "6", with its length, so that no prefix can
                // stand for another.
                self.keyed(|mac| {
                    mac.update(b"6/");
                    mac.update(&[v6_prefix]);
                    mac.update(&masked.to_be_bytes()[..8]);
                })
            }
            _ => self.fingerprint(addr, None),
        }
    }

    /// The first 128 bits of the HMAC, under this key, of what `feed` gives it.
    fn keyed(&self, feed: impl FnOnce(&mut Hmac<Sha256>)) -> Fingerprint {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        feed(&mut mac);
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Fingerprint(out)
    }
}

impl fmt::Debug for ReporterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReporterSecret(<redacted>)")
    }
}

/// A reporter's keyed fingerprint (128 bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// A byte of it, evenly distributed (it is an HMAC): for sharding tables by reporter.
    pub fn spread(self) -> u8 {
        self.0[0]
    }

    /// Lower-case hex, as used in store keys.
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

/// Lower-case hex of `bytes` (on the ingest hot path: no formatting machinery).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// An opaque client install id: 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

/// Longest accepted `client_id`, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;

impl ClientId {
    /// Parses an install id.
    pub fn parse(s: &str) -> Result<Self, String> {
        let chars = s.chars().count();
        if chars == 0 || chars > MAX_CLIENT_ID_CHARS {
            return Err(format!(
                "client_id must be 1 to {MAX_CLIENT_ID_CHARS} characters, got {chars}"
            ));
        }
        if s.chars().any(char::is_control) {
            return Err("client_id must not contain control characters".into());
        }
        Ok(Self(s.to_owned()))
    }
}

/// The web origins whose pages may send reports (`--allowed-origins`): each
/// `scheme://host[:port]`, as a browser's `Origin` header writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl FromStr for AllowedOrigins {
    type Err = String;

    /// Parses a comma-separated list such as `https://status.example.com,
    /// http://localhost:3000`. An empty string allows none.
    /// A scheme's default port is left out, as browsers leave it out of `Origin`
    /// (`https://a.example:443` is `https://a.example`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        comma_separated(s, |part| {
            parse_origin(part).ok_or_else(|| {
                format!(
                    "{part:?} is not an origin: give scheme://host[:port] (http or https, a \
                     port from 1 to 65535, no path and no wildcard), e.g. \
                     https://status.example.com"
                )
            })
        })
        .map(Self)
    }
}

/// `scheme://host[:port]` as a browser's `Origin` writes it: lower case, without the scheme's
/// default port. `None` if `part` is not one.
fn parse_origin(part: &str) -> Option<String> {
    let lower = part.to_ascii_lowercase();
    let (scheme, authority, default_port) = if let Some(rest) = lower.strip_prefix("https://") {
        ("https", rest, 443)
    } else {
        ("http", lower.strip_prefix("http://")?, 80)
    };
    // The host ends at the port's colon: after the brackets of an IPv6 literal.
    let host_end = if authority.starts_with('[') {
        authority.find(']')? + 1
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(host_end);
    let host = match host.strip_prefix('[') {
        // As a browser writes it: `[0:0::1]` is `[::1]`.
        Some(literal) => format!(
            "[{}]",
            literal
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()?
        ),
        None if !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')) =>
        {
            host.to_owned()
        }
        None => return None,
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        None => return None,
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            match digits.parse::<u16>().ok().filter(|&p| p > 0)? {
                p if p == default_port => None,
                p => Some(p),
            }
        }
    };
    Some(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

impl AllowedOrigins {
    /// Whether a request's `Origin` header names one of the allowed origins.
    pub fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// The items of a comma-separated flag value, each parsed by `parse`; blanks are skipped, so
/// an empty value is an empty list.
fn comma_separated<T>(
    s: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(parse)
        .collect()
}

/// The proxies whose `X-Forwarded-For` is believed (`--trusted-proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// Parses a comma-separated list of addresses and CIDR ranges, e.g.
    /// `10.0.0.0/8, 127.0.0.1, ::1`. An empty string trusts nobody.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        comma_separated(s, |part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{part:?} is neither an IP address nor a CIDR range"))
        })
        .map(Self)
    }
}

impl TrustedProxies {
    /// Whether `addr` is one of the trusted proxies.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The reporter's address: the peer itself, unless the peer is a trusted proxy, in which
    /// case the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (the
    /// left part of the header is written by the client and cannot be believed).
    /// `forwarded_for` holds the raw values of every `X-Forwarded-For` header, in order; they
    /// are split into hops before decoding, so bytes a client put on the left cannot spoil the
    /// hops proxies appended on the right.
    pub fn client_addr<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        // Empty list elements (`a,,b`, a trailing comma) are no hops (RFC 9110 §5.6.1).
        let hops: Vec<&[u8]> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(|&b| b == b','))
            .filter(|hop| !hop.trim_ascii().is_empty())
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(addr) = std::str::from_utf8(hop)
                .ok()
                .and_then(|h| parse_hop(h.trim()))
            else {
                // Garbage where an address should be: stop at the last hop we could trust.
                break;
            };
            client = addr;
            if !self.contains(addr) {
                break;
            }
        }
        client
    }
}

/// `addr`, or the IPv4 address an IPv6 one carries: IPv4-mapped (`::ffff:a.b.c.d`),
/// translated by NAT64 under the well-known prefix (`64:ff9b::a.b.c.d`, RFC 6052), or
/// IPv4-compatible (`::a.b.c.d`, deprecated but still written). Taken by its /64, every IPv4
/// client behind a NAT64 or SIIT front end was one reporter.
pub fn embedded_ipv4(addr: IpAddr) -> IpAddr {
    let canonical = addr.to_canonical();
    let IpAddr::V6(v6) = canonical else {
        return canonical;
    };
    let s = v6.segments();
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    // `::` and `::1` are not IPv4-compatible addresses, nor is anything under ::/112.
    let compatible = s[..6] == [0; 6] && s[6] != 0;
    if nat64 || compatible {
        IpAddr::V4(std::net::Ipv4Addr::from(u128::from(v6) as u32))
    } else {
        canonical
    }
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), or an IPv6 address in brackets without one (`[2001:db8::1]`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            hop.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
        .map(|a| a.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_address_inside_an_ipv6_one_is_its_own_reporter() {
        let secret = ReporterSecret(SecretSlice::from(b"k".to_vec()));
        let of = |a: &str| secret.fingerprint(a.parse().unwrap(), None);
        // NAT64 (well-known prefix), IPv4-mapped and IPv4-compatible: the IPv4 host.
        assert_eq!(of("64:ff9b::198.51.100.1"), of("198.51.100.1"));
        assert_eq!(of("64:ff9b::c633:6401"), of("198.51.100.1"));
        assert_ne!(of("64:ff9b::203.0.113.9"), of("64:ff9b::198.51.100.1"));
        assert_eq!(of("::ffff:203.0.113.9"), of("203.0.113.9"));
        assert_eq!(of("::203.0.113.9"), of("203.0.113.9"));
        // Other IPv6 addresses by their /64.
        assert_eq!(of("2001:db8::1"), of("2001:db8::2"));
        assert_ne!(of("2001:db8::1"), of("2001:db8:0:1::1"));
        assert_eq!(of("::1"), of("::2"));
        assert_ne!(of("::1"), of("0.0.0.1"));
        assert_eq!(
            embedded_ipv4("64:ff9b:1::1".parse().unwrap()).to_string(),
            "64:ff9b:1::1"
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_limits_may_count_an_ipv6_client_by_a_shorter_prefix() {
        let secret = ReporterSecret(SecretSlice::from(b"k".to_vec()));
        let of = |a: &str, prefix| secret.address(ip(a), prefix);
        // At 64, the reporter's own fingerprint without an install id.
        assert_eq!(
            of("2001:db8:0:1::1", 64),
            secret.fingerprint(ip("2001:db8:0:1::1"), None)
        );
        assert_ne!(of("2001:db8:0:1::1", 64), of("2001:db8:0:2::1", 64));
        // At 56, the /64s of one /56 are one address, another /56 another.
        assert_eq!(of("2001:db8:0:1::1", 56), of("2001:db8:0:ff::9", 56));
        assert_ne!(of("2001:db8:0:1::1", 56), of("2001:db8:0:100::1", 56));
        // A /56 is not the /64 that has the same first 64 bits, nor a /48 its /56.
        assert_ne!(of("2001:db8::", 56), of("2001:db8::", 64));
        assert_ne!(of("2001:db8::", 48), of("2001:db8::", 56));
        assert_eq!(of("2001:db8:0:1::1", 48), of("2001:db8:0:ffff::1", 48));
        assert_eq!(of("2001:db8::1", 32), of("2001:db8:ffff::1", 32));
        // IPv4, and IPv6 carrying IPv4, are their IPv4 address whatever the prefix.
        assert_eq!(of("198.51.100.1", 48), of("198.51.100.1", 64));
        assert_eq!(of("64:ff9b::198.51.100.1", 48), of("198.51.100.1", 64));
        assert_ne!(
            of("64:ff9b::198.51.100.1", 48),
            of("64:ff9b::198.51.100.2", 48)
        );
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            trusted.client_addr(ip("203.0.113.9"), ["1.1.1.1"].map(str::as_bytes)),
            ip("203.0.113.9")
        );
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client_addr(ip("10.0.0.1"), ["1.1.1.1"].map(str::as_bytes)),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_peer_yields_rightmost_untrusted_hop() {
        let trusted: TrustedProxies = "10.0.0.0/8, ::1".parse().unwrap();
        // client-forged entry, then the real client, then an inner proxy.
        let header = "6.6.6.6, 198.51.100.7, 10.1.2.3";
        assert_eq!(
            trusted.client_addr(ip("10.0.0.1"), [header.as_bytes()]),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client_addr(ip("::1"), ["198.51.100.7:4711"].map(str::as_bytes)),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client_addr(ip("::1"), ["[2001:db8::5]:443"].map(str::as_bytes)),
            ip("2001:db8::5")
        );
        // Brackets without a port, and empty list elements, as some proxies write them.
        assert_eq!(
            trusted.client_addr(ip("::1"), ["[2001:db8::6]"].map(str::as_bytes)),
            ip("2001:db8::6")
        );
        assert_eq!(
            trusted.client_addr(ip("10.0.0.1"), ["203.0.113.2, ,"].map(str::as_bytes)),
            ip("203.0.113.2")
        );
        // Several headers are one list.
        assert_eq!(
            trusted.client_addr(
                ip("10.0.0.1"),
                ["6.6.6.6", "198.51.100.8"].map(str::as_bytes)
            ),
            ip("198.51.100.8")
        );
    }

    #[test]
    fn trusted_peer_without_usable_header_is_the_client() {
        let trusted: TrustedProxies = "127.0.0.1".parse().unwrap();
        assert_eq!(
            trusted.client_addr(ip("127.0.0.1"), std::iter::empty()),
            ip("127.0.0.1")
        );
        assert_eq!(
            trusted.client_addr(ip("127.0.0.1"), ["not-an-ip"].map(str::as_bytes)),
            ip("127.0.0.1")
        );
        // Only trusted hops: the left-most one is as far as we can see.
        assert_eq!(
            trusted.client_addr(ip("127.0.0.1"), ["127.0.0.1"].map(str::as_bytes)),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn bytes_a_client_put_on_the_left_do_not_hide_the_proxies_hops() {
        let trusted: TrustedProxies = "127.0.0.1".parse().unwrap();
        let header: &[u8] = b"\xff\xfe, 198.51.100.2";
        assert_eq!(
            trusted.client_addr(ip("127.0.0.1"), [header]),
            ip("198.51.100.2")
        );
    }

    #[test]
    fn ipv6_reporters_are_their_64_prefix_and_inputs_cannot_collide() {
        let k = ReporterSecret::from_config("k");
        assert_eq!(
            k.fingerprint(ip("2001:db8:1:2::1"), None),
            k.fingerprint(ip("2001:db8:1:2:ffff::9"), None)
        );
        assert_ne!(
            k.fingerprint(ip("2001:db8:1:2::1"), None),
            k.fingerprint(ip("2001:db8:1:3::1"), None)
        );
        // An IPv4 address with an id versus an IPv6 prefix spelling the same bytes.
        let id = ClientId::parse("abcdefghijk").unwrap();
        assert_ne!(
            k.fingerprint(ip("1.2.3.4"), Some(&id)),
            k.fingerprint(ip("102:304:61:6263::"), None)
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_canonical() {
        let trusted: TrustedProxies = "127.0.0.1".parse().unwrap();
        assert_eq!(
            trusted.client_addr(ip("::ffff:127.0.0.1"), ["192.0.2.1"].map(str::as_bytes)),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn bad_proxy_lists_are_rejected() {
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("localhost".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().0.is_empty());
    }

    #[test]
    fn fingerprints_are_keyed_and_separate_install_ids() {
        let a = ReporterSecret::from_config("one");
        let b = ReporterSecret::from_config("two");
        let addr = ip("192.0.2.1");
        let id = ClientId::parse("install-1").unwrap();
        assert_ne!(a.fingerprint(addr, None), b.fingerprint(addr, None));
        assert_ne!(a.fingerprint(addr, None), a.fingerprint(addr, Some(&id)));
        assert_eq!(
            a.fingerprint(addr, Some(&id)),
            a.fingerprint(addr, Some(&id))
        );
        assert_eq!(
            a.fingerprint(ip("::ffff:192.0.2.1"), None),
            a.fingerprint(addr, None)
        );
        assert_eq!(a.fingerprint(addr, None).to_hex().len(), 32);
    }

    #[test]
    fn client_ids_are_bounded() {
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse(&"x".repeat(64)).is_ok());
        assert!(ClientId::parse(&"é".repeat(64)).is_ok());
        assert!(ClientId::parse(&"x".repeat(65)).is_err());
        assert!(ClientId::parse("a\nb").is_err());
    }
}
