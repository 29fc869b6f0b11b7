//! Optional access control on the sidecar's port: a bearer token, a client address allowlist,
//! and TLS (with client certificates when a client CA is given). All off by default: the mesh
//! exclusion and the NetworkPolicy are the main model; these are for clusters that want the
//! plaintext hole narrower still.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// Who may use the routes and `/-/metrics` (`/-/healthy` and `/-/ready` stay open for the
/// kubelet's probes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    /// A file holding the token clients must send as `Authorization: Bearer <token>`.
    pub bearer_token_file: Option<PathBuf>,
    /// Client addresses allowed; empty allows every address.
    pub allowed_clients: Vec<Cidr>,
}

/// TLS on the listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// The server certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address (`/32` or `/128` implied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| {
            format!("`{text}` is not an address block; write one such as 10.0.0.0/8 or fd00::/8")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has prefix length `{p}`; use 0 to {max}"))?,
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != addr {
            return Err(format!(
                "`{text}` has bits set after its prefix; write {}/{prefix}",
                cidr.network()
            ));
        }
        Ok(cidr)
    }

    /// The block's first address.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// Whether `ip` is in the block; an IPv4 address mapped into IPv6 (`::ffff:10.1.2.3`, how a
    /// dual-stack listener sees IPv4 clients) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        Cidr { addr: ip, prefix: self.prefix }.network() == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The file's `auth` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct AuthFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bearer_token_file: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) allowed_clients: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The file's `tls` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TlsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cert_file: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key_file: Option<Spanned<String>>,
    #[serde(default, rename = "clientCAFile", skip_serializing_if = "Option::is_none")]
    pub(crate) client_ca_file: Option<Spanned<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_and_contain_their_addresses() {
        let b = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(b.contains("10.255.1.2".parse().unwrap()));
        assert!(!b.contains("11.0.0.1".parse().unwrap()));
        assert!(b.contains("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped");
        assert!(!b.contains("fd00::1".parse().unwrap()));
        let one = Cidr::parse("192.168.1.5").unwrap();
        assert_eq!(one.to_string(), "192.168.1.5/32");
        assert!(one.contains("192.168.1.5".parse().unwrap()));
        assert!(!one.contains("192.168.1.6".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn bad_blocks_say_what_to_write() {
        assert!(Cidr::parse("10.0.0.1/8").unwrap_err().contains("write 10.0.0.0/8"));
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("use 0 to 32"));
        assert!(Cidr::parse("prometheus").unwrap_err().contains("not an address block"));
    }
}
