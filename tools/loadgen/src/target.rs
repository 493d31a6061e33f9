//! The target URL and the loopback-only rule.

use std::net::{SocketAddr, ToSocketAddrs};

use hyper::Uri;

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` (TLS) or `http`.
    pub tls: bool,
    /// Host name or IP address, without IPv6 brackets (for SNI and certificate checks).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `host:port` as written in the URL (the `Host` header / `:authority`).
    pub authority: String,
    /// Path and query (`/validate`).
    pub path: String,
    /// The whole URL.
    pub uri: Uri,
}

/// Parses an `https://` (or `http://`) URL.
pub fn parse(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("URL {url:?} must start with https:// or http://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("URL {url:?} has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    Ok(Target {
        tls,
        host,
        port,
        authority: authority.as_str().to_owned(),
        path,
        uri,
    })
}

/// Checks that every address is on this machine's loopback interface, unless `allow_remote`.
pub fn check_loopback(addrs: &[SocketAddr], allow_remote: bool) -> Result<(), String> {
    if addrs.is_empty() {
        return Err("the host resolves to no address".to_owned());
    }
    if allow_remote {
        return Ok(());
    }
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(a) => Err(format!(
            "{} is not a loopback address; this tool only loads 127.0.0.0/8 or ::1 unless --allow-remote is given",
            a.ip()
        )),
        None => Ok(()),
    }
}

/// Resolves the target and applies [`check_loopback`]; returns the address to connect to.
pub fn resolve(target: &Target, allow_remote: bool) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    check_loopback(&addrs, allow_remote)?;
    Ok(addrs[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = parse("https://127.0.0.1:8443/validate?timeout=10s").expect("url");
        assert!(t.tls);
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8443);
        assert_eq!(t.authority, "127.0.0.1:8443");
        assert_eq!(t.path, "/validate?timeout=10s");
        let t = parse("http://[::1]/").expect("url");
        assert!(!t.tls);
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 80);
        let t = parse("https://localhost").expect("url");
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        assert!(parse("ftp://127.0.0.1/").is_err());
        assert!(parse("/validate").is_err());
        assert!(parse("not a url").is_err());
    }

    #[test]
    fn loopback_only_unless_allowed() {
        let lo: SocketAddr = "127.0.0.1:8443".parse().expect("addr");
        let lo2: SocketAddr = "127.3.2.1:1".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:8443".parse().expect("addr");
        let remote: SocketAddr = "10.0.0.1:443".parse().expect("addr");
        assert!(check_loopback(&[lo, lo2, lo6], false).is_ok());
        assert!(check_loopback(&[lo, remote], false).is_err());
        assert!(check_loopback(&[remote], true).is_ok());
        assert!(check_loopback(&[], true).is_err());
    }

    #[test]
    fn resolves_localhost_to_loopback() {
        let t = parse("https://127.0.0.1:1/").expect("url");
        assert_eq!(
            resolve(&t, false).expect("resolve"),
            "127.0.0.1:1".parse::<SocketAddr>().expect("addr")
        );
    }
}
