//! Outgoing HTTP clients (to banks, webhook receivers, the token service): rustls with the
//! ring provider, the platform's trusted roots, and optionally one more root — the
//! sandbox's own certificate, when the sandbox serves TLS and its stand-ins call it.

use std::time::Duration;

/// A client builder with `timeout` for connecting and for each call, trusting `extra_root`
/// (a PEM certificate) beside the platform's roots.
pub fn builder(
    timeout: Duration,
    extra_root: Option<&[u8]>,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    crate::tls::install_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout);
    // Every certificate of the file: a server's PEM holds its certificate and then its
    // chain, and it is the chain's CA that makes the server's certificate check.
    for certificate in extra_root
        .map(reqwest::Certificate::from_pem_bundle)
        .transpose()?
        .unwrap_or_default()
    {
        builder = builder.add_root_certificate(certificate);
    }
    Ok(builder)
}

/// Whether `address` is on the public internet: not loopback, private (RFC 1918, unique
/// local), link-local, shared (CGNAT), unspecified, multicast, broadcast, documentation or
/// benchmarking space, nor an IPv4 address in IPv6 clothing that is one of those.
pub fn is_public(address: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Whether `url` is `https` to a host that may be public: a name (screened when resolved by
/// [`PublicOnlyResolver`]) or an address literal that [`is_public`].
pub fn public_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    if url.scheme() != "https" || host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(address) => is_public(address),
        Err(_) => true,
    }
}

/// A resolver that hands out public addresses only: a webhook host that resolves to an
/// internal address (at registration or any later moment — DNS can change) is never
/// connected to, because the connection only ever sees what this resolver returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<std::net::SocketAddr> =
                found.filter(|address| is_public(address.ip())).collect();
            if public.is_empty() {
                return Err("the host resolves to no public address".into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "203.0.114.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::public_url;

    #[test]
    fn webhook_urls_must_be_https_to_public_hosts() {
        for refused in [
            "http://bank.example/hooks",
            "https://127.0.0.1/hooks",
            "https://10.0.0.5/hooks",
            "https://[::1]/hooks",
            "https://[fd00::1]/hooks",
            "https://localhost/hooks",
            "not a url",
        ] {
            assert!(!public_url(refused), "{refused}");
        }
        for allowed in ["https://bank.example/hooks", "https://8.8.8.8/hooks"] {
            assert!(public_url(allowed), "{allowed}");
        }
    }
}
