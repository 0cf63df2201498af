//! The textual forms users type, each parsed in one place: sizes (`512m`), port publications
//! (`127.0.0.1:8080:80/tcp`), mounts (`NAME:/path:ro`), and points in time (`10m` ago or
//! RFC 3339). The command line, the configuration file and (later) Compose files all use
//! these, so `8080:80` means the same everywhere.

use std::path::PathBuf;

use crate::error::UsageError;
use crate::runtime::container::{MountSource, MountSpec, PortMapping, Protocol};
use crate::runtime::names;

/// `512`, `64k`, `512m`, `2g` (an optional `b`, any case) as bytes.
pub fn size(s: &str) -> Result<u64, UsageError> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.trim_end_matches('b').chars().last() {
        Some('k') => (&s[..s.trim_end_matches('b').len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&s[..s.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (s.trim_end_matches('b'), 1),
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0)
        .map(|n| (n * mult as f64) as u64)
        .ok_or_else(|| UsageError(format!("invalid size {s:?} (e.g. 512m, 2g)")))
}

/// `[IP:]HOST:CONTAINER[/tcp|/udp]`, or `CONTAINER` for a free host port.
pub fn publish(spec: &str) -> Result<PortMapping, UsageError> {
    let bad = || UsageError(format!("invalid port {spec:?}: use [IP:]HOST:CONTAINER[/tcp|/udp]"));
    let (addr, proto) = spec.rsplit_once('/').map_or((spec, "tcp"), |(a, p)| (a, p));
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return Err(bad()),
    };
    let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => ("", "", *c),
        [c, h] => ("", *h, *c),
        [c, h, ip] => (*ip, *h, *c),
        _ => return Err(bad()),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ctr: u16 = ctr.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    let host: u16 = if host.is_empty() { 0 } else { host.parse().map_err(|_| bad())? };
    Ok(PortMapping { host_ip: ip.to_string(), host_port: host, container_port: ctr, protocol })
}

/// `NAME:/path[:ro|:rw]` (a named volume) or `/host/path:/path[:ro|:rw]` (a bind mount).
pub fn mount(spec: &str) -> Result<MountSpec, UsageError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => return Err(UsageError(format!("invalid volume {spec:?}: use NAME:/path[:ro] or /host/path:/path[:ro]"))),
    };
    if !dst.starts_with('/') {
        return Err(UsageError(format!("invalid volume {spec:?}: the container path must be absolute")));
    }
    let source = if src.starts_with('/') {
        MountSource::Bind { path: PathBuf::from(src) }
    } else if src.starts_with('.') {
        return Err(UsageError(format!("invalid volume {spec:?}: host paths must be absolute")));
    } else {
        names::validate_name(src).map_err(UsageError)?;
        MountSource::Volume { name: src.to_string() }
    };
    Ok(MountSpec { source, target: dst.to_string(), read_only: ro })
}

/// A point in time: RFC 3339, or a duration ago (`30s`, `10m`, `2h`, `1d`).
pub fn since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, UsageError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| UsageError(format!("invalid --since {s:?}: an RFC 3339 time or a duration like 10m")))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(UsageError(format!("invalid --since {s:?}"))),
    };
    Ok(chrono::Utc::now() - chrono::Duration::seconds(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs() {
        let p = publish("8080:80").unwrap();
        assert_eq!((p.host_port, p.container_port, p.host_ip.as_str()), (8080, 80, ""));
        let p = publish("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!((p.host_ip.as_str(), p.protocol.clone()), ("127.0.0.1", Protocol::Udp));
        assert_eq!(publish("80").unwrap().host_port, 0);
        assert!(publish("80:0").is_err());
        assert!(publish("a:b").is_err());
        assert!(publish("80/sctp").is_err());
    }

    #[test]
    fn mount_specs() {
        let v = mount("site:/www:ro").unwrap();
        assert_eq!(v.source, MountSource::Volume { name: "site".into() });
        assert!(v.read_only);
        let v = mount("/srv/data:/data").unwrap();
        assert_eq!(v.source, MountSource::Bind { path: "/srv/data".into() });
        assert!(mount("site:relative").is_err());
        assert!(mount("./x:/x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("32m").unwrap(), 32 << 20);
        assert_eq!(size("1g").unwrap(), 1 << 30);
        assert_eq!(size("512").unwrap(), 512);
        assert!(size("lots").is_err());
    }
}
