//! The textual forms users type, each parsed in one place: sizes (`512m`), port publications
//! (`127.0.0.1:8080:80/tcp`), mounts (`NAME:/path:ro`), and points in time (`10m` ago or
//! RFC 3339). The command line, the configuration file and (later) Compose files all use
//! these, so `8080:80` means the same everywhere.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::UsageError;
use crate::runtime::container::{MountSource, MountSpec, PortMapping, Protocol};
use crate::runtime::names;

/// How a service's data is made consistent for a snapshot (`snapshot::consistency` runs it):
/// `freeze`, `mariadb` (or `mysql`), `postgres` (or `postgresql`), `sqlite:/path/db`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    #[default]
    Freeze,
    Mariadb,
    Postgres,
    /// The database file, a path inside the container.
    Sqlite(String),
}

impl Consistency {
    pub fn parse(s: &str) -> Result<Consistency, String> {
        match s {
            "freeze" | "" => Ok(Consistency::Freeze),
            "mariadb" | "mysql" => Ok(Consistency::Mariadb),
            "postgres" | "postgresql" => Ok(Consistency::Postgres),
            _ => match s.strip_prefix("sqlite:") {
                Some(path) if path.starts_with('/') && !path.contains(['\'', '\n', '\0']) => {
                    Ok(Consistency::Sqlite(path.to_string()))
                }
                Some(_) => Err(format!("{s:?}: the database is an absolute path in the container (sqlite:/path/db)")),
                None => Err(format!("unknown consistency recipe {s:?} (freeze, mariadb, postgres, sqlite:/path/db)")),
            },
        }
    }
}

/// The longest duration any setting takes: 100 years.
const MAX_DURATION_SECS: u64 = 100 * 366 * 86_400;

/// A duration as Docker (and Go) write them: `1m30s`, `500ms`, `2h`, `1.5h`, and `1d` for a
/// day; a plain number is seconds. Units: `ns`, `us` (`µs`), `ms`, `s`, `m` (minutes), `h`,
/// `d`. The one grammar of intervals, timeouts and delays, on the command line and in the
/// configuration (retention spans are restic's, `repo::forget::Within`).
pub fn duration(s: &str) -> Result<Duration, UsageError> {
    let bad = || UsageError(format!("invalid duration {s:?} (e.g. 30s, 1m30s, 500ms, 2h, 1d)"));
    let text = s.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| bad())?;
        if secs > MAX_DURATION_SECS {
            return Err(UsageError(format!("duration {s:?} is longer than 100 years")));
        }
        return Ok(Duration::from_secs(secs));
    }
    let mut rest = text;
    let mut nanos: u128 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let num = &rest[..num_len];
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(bad()),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if whole.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
        let mut part = whole.checked_mul(per).ok_or_else(bad)?;
        if !frac.is_empty() {
            let digits = frac.len().min(18) as u32;
            let f: u128 = frac[..digits as usize].parse().map_err(|_| bad())?;
            part = part.checked_add(f * per / 10u128.pow(digits)).ok_or_else(bad)?;
        }
        nanos = nanos.checked_add(part).ok_or_else(bad)?;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad())?;
    // Longer than anything waits for, and past what clocks add safely.
    if secs > MAX_DURATION_SECS {
        return Err(UsageError(format!("duration {s:?} is longer than 100 years")));
    }
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// A CPU limit (`--cpus`, `cpus =`): from 0.01 to the number of CPUs this host has.
pub fn cpus(n: f64) -> Result<f64, UsageError> {
    let have = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    if !n.is_finite() || !(0.01..=have).contains(&n) {
        return Err(UsageError(format!("cpus {n}: the range is from 0.01 to {have:.2}, as this host has {have} CPUs")));
    }
    Ok(n)
}

/// Docker's smallest memory limit.
const MIN_MEMORY: u64 = 6 << 20;

/// A memory limit (`--memory`, `memory =`), as a size of at least 6 MiB (Docker's least).
pub fn memory(s: &str) -> Result<u64, UsageError> {
    let m = size(s)?;
    if m < MIN_MEMORY {
        return Err(UsageError(format!("memory {s:?}: the least a container may be given is 6 MiB")));
    }
    Ok(m)
}

/// A process limit (`--pids-limit`, `pids_limit =`): positive, or -1 (or 0) for none.
pub fn pids_limit(n: i64) -> Result<i64, UsageError> {
    if n < -1 {
        return Err(UsageError(format!("pids limit {n}: a positive number, or -1 (or 0) for no limit")));
    }
    Ok(n)
}

/// `512`, `64k`, `512m`, `2g` (an optional `b`, any case) as bytes.
pub fn size(s: &str) -> Result<u64, UsageError> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.trim_end_matches('b').chars().last() {
        Some('k') => (&s[..s.trim_end_matches('b').len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&s[..s.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (s.trim_end_matches('b'), 1),
    };
    let bytes = num
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .map(|n| n * mult as f64)
        .ok_or_else(|| UsageError(format!("invalid size {s:?} (e.g. 512m, 2g)")))?;
    // Sizes go to the kernel as signed 64-bit numbers.
    if bytes >= i64::MAX as f64 {
        return Err(UsageError(format!("size {s:?} is too large")));
    }
    Ok(bytes as u64)
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

/// `NAME:/path[:OPTIONS]` (a named volume) or `/host/path:/path[:OPTIONS]` (a bind mount),
/// OPTIONS a comma-separated list of `ro`, `rw` and (volumes) `nocopy`, as Docker writes them.
pub fn mount(spec: &str) -> Result<MountSpec, UsageError> {
    mount_in(spec, None)
}

/// [`mount`], with host paths starting with `.` taken from directory `base` (the command
/// line's current directory, as Docker does; a configuration file has no such place).
pub fn mount_in(spec: &str, base: Option<&std::path::Path>) -> Result<MountSpec, UsageError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let usage =
        || UsageError(format!("invalid volume {spec:?}: use NAME:/path[:ro|rw|nocopy] or /host/path:/path[:ro]"));
    let (src, dst, options) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(usage()),
    };
    let (mut ro, mut nocopy) = (false, false);
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => ro = true,
            "rw" => ro = false,
            "nocopy" => nocopy = true,
            other => {
                return Err(UsageError(format!(
                    "invalid volume {spec:?}: option {other:?} is not supported (ro, rw, nocopy)"
                )));
            }
        }
    }
    if !dst.starts_with('/') {
        return Err(UsageError(format!("invalid volume {spec:?}: the container path must be absolute")));
    }
    let source = if src.starts_with('/') {
        MountSource::Bind { path: PathBuf::from(src), must_exist: false }
    } else if let (true, Some(base)) = (src == "." || src.starts_with("./") || src.starts_with(".."), base) {
        MountSource::Bind { path: lexical_join(base, src), must_exist: false }
    } else if src.starts_with('.') {
        return Err(UsageError(format!("invalid volume {spec:?}: host paths must be absolute")));
    } else {
        names::validate_name(src).map_err(UsageError)?;
        MountSource::Volume { name: src.to_string() }
    };
    if nocopy && matches!(source, MountSource::Bind { .. }) {
        return Err(UsageError(format!("invalid volume {spec:?}: nocopy is for volumes, not bind mounts")));
    }
    Ok(MountSpec { source, target: dst.to_string(), read_only: ro, nocopy, anonymous: false })
}

/// Docker's `--mount` form: comma-separated `key=value` fields, `type=volume` (the
/// default; without `source`, an anonymous volume), `type=bind` (the source must exist) or
/// `type=tmpfs`. Keys: `type`, `source`/`src`, `target`/`destination`/`dst`,
/// `readonly`/`ro`, `volume-nocopy`, `tmpfs-size`, `tmpfs-mode`, `bind-propagation`
/// (`rprivate` only), `consistency` (ignored on Linux, as by Docker). Host paths starting
/// with `.` are taken from `base`.
pub fn mount_flag(spec: &str, base: Option<&std::path::Path>) -> Result<MountSpec, UsageError> {
    let bad = |why: String| UsageError(format!("invalid --mount {spec:?}: {why}"));
    let flag = |key: &str, v: Option<&str>| -> Result<bool, UsageError> {
        match v {
            None | Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(bad(format!("{key}={other}: use true or false"))),
        }
    };
    let (mut kind, mut source, mut target) = ("volume", None, None);
    let (mut read_only, mut nocopy, mut size, mut mode) = (false, false, None, None);
    for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (field, None),
        };
        let need = || value.filter(|v| !v.is_empty()).ok_or_else(|| bad(format!("{key} needs a value")));
        match key {
            "type" => kind = need()?,
            "source" | "src" => source = Some(need()?),
            "target" | "destination" | "dst" => target = Some(need()?),
            "readonly" | "ro" => read_only = flag(key, value)?,
            "volume-nocopy" => nocopy = flag(key, value)?,
            "tmpfs-size" => size = Some(self::size(need()?)?),
            "tmpfs-mode" => {
                let v = need()?;
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| bad(format!("tmpfs-mode {v:?} is not an octal mode")))?,
                );
            }
            "bind-propagation" if matches!(value, Some("rprivate" | "private")) => {}
            "bind-propagation" => return Err(bad("only rprivate bind propagation is supported".into())),
            "consistency" => {}
            other => {
                return Err(bad(format!(
                    "unknown key {other:?} (type, source, target, readonly, volume-nocopy, tmpfs-size, tmpfs-mode)"
                )));
            }
        }
    }
    let target = target.ok_or_else(|| bad("a target is required".into()))?;
    if !target.starts_with('/') {
        return Err(bad("the target must be an absolute path".into()));
    }
    let source = match (kind, source) {
        ("bind", None) => return Err(bad("a bind mount needs a source".into())),
        ("bind", Some(src)) if src.starts_with('/') => MountSource::Bind { path: PathBuf::from(src), must_exist: true },
        ("bind", Some(src)) => match base {
            Some(base) => MountSource::Bind { path: lexical_join(base, src), must_exist: true },
            None => return Err(bad("the source must be an absolute path".into())),
        },
        ("volume", None) => {
            // Anonymous: made, and removed with the container by rm -v and run --rm.
            let m = MountSpec {
                source: MountSource::Volume { name: crate::fsutil::random_hex(32) },
                target: target.to_string(),
                read_only,
                nocopy,
                anonymous: true,
            };
            return Ok(m);
        }
        ("volume", Some(name)) => {
            names::validate_name(name).map_err(&bad)?;
            MountSource::Volume { name: name.to_string() }
        }
        ("tmpfs", None) => MountSource::Tmpfs { size, mode, exec: false },
        ("tmpfs", Some(_)) => return Err(bad("a tmpfs has no source".into())),
        (other, _) => return Err(bad(format!("type {other:?} is not supported (volume, bind, tmpfs)"))),
    };
    if nocopy && !matches!(source, MountSource::Volume { .. }) {
        return Err(bad("volume-nocopy is for volumes".into()));
    }
    if (size.is_some() || mode.is_some()) && !matches!(source, MountSource::Tmpfs { .. }) {
        return Err(bad("tmpfs-size and tmpfs-mode are for tmpfs mounts".into()));
    }
    Ok(MountSpec { source, target: target.to_string(), read_only, nocopy, anonymous: false })
}

/// Docker's `--tmpfs PATH[:OPTIONS]`: options `size=64m`, `mode=1770`, `ro`, `rw`, and the
/// flags Docker applies anyway (`noexec`, `nosuid`, `nodev`).
pub fn tmpfs_flag(spec: &str) -> Result<MountSpec, UsageError> {
    let bad = |why: String| UsageError(format!("invalid --tmpfs {spec:?}: {why}"));
    let (target, options) = spec.split_once(':').unwrap_or((spec, ""));
    if !target.starts_with('/') {
        return Err(bad("the path must be absolute".into()));
    }
    let (mut size, mut mode, mut read_only, mut exec) = (None, None, false, false);
    for o in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => size = Some(self::size(v)?),
            Some(("mode", v)) => {
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| bad(format!("mode {v:?} is not an octal mode")))?,
                )
            }
            None if o == "ro" => read_only = true,
            None if o == "rw" => read_only = false,
            None if o == "exec" => exec = true,
            None if o == "noexec" => exec = false,
            None if matches!(o, "nosuid" | "nodev") => {}
            _ => return Err(bad(format!("option {o:?} is not supported (size, mode, ro, rw, exec, noexec)"))),
        }
    }
    Ok(MountSpec {
        source: MountSource::Tmpfs { size, mode, exec },
        target: target.to_string(),
        read_only,
        nocopy: false,
        anonymous: false,
    })
}

/// `base/rel` with `.` and `..` resolved by name (symbolic links are left to the kernel).
pub fn lexical_join(base: &std::path::Path, rel: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `KEY=VALUE` (a label; `KEY` alone is an empty value, as Docker takes it).
pub fn label(spec: &str) -> Result<(String, String), UsageError> {
    let (k, v) = spec.split_once('=').unwrap_or((spec, ""));
    if k.is_empty() || k.chars().any(char::is_whitespace) {
        return Err(UsageError(format!("invalid label {spec:?}: use KEY=VALUE")));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `NAME:ADDRESS` (`--add-host`; Docker also takes `NAME=ADDRESS`): a host name and an IP
/// address (IPv6 as is, `::1`, or in brackets).
pub fn extra_host(spec: &str) -> Result<(String, std::net::IpAddr), UsageError> {
    let bad = |why: &str| UsageError(format!("invalid extra host {spec:?}: {why} (use NAME:ADDRESS)"));
    let (name, addr) = spec.split_once([':', '=']).ok_or_else(|| bad("no address"))?;
    // A line of /etc/hosts: names as resolvers take them (Compose service names may hold `_`).
    if name.is_empty()
        || name.len() > 253
        || !name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        return Err(bad("the name may hold only letters, digits, '-', '.' and '_'"));
    }
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let ip = addr.parse().map_err(|_| bad(&format!("{addr:?} is not an IP address")))?;
    Ok((name.to_string(), ip))
}

/// A point in time: RFC 3339, or a duration ago (`30s`, `10m`, `2h`, `1d`).
pub fn since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, UsageError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let bad = || UsageError(format!("invalid --since {s:?}: an RFC 3339 time or a duration like 10m"));
    let ago = duration(s).map_err(|_| bad())?;
    let ago = chrono::Duration::from_std(ago).map_err(|_| bad())?;
    chrono::Utc::now().checked_sub_signed(ago).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    #[test]
    fn extra_hosts() {
        use std::net::IpAddr;
        assert_eq!(super::extra_host("db:127.0.0.1").unwrap(), ("db".into(), IpAddr::from([127, 0, 0, 1])));
        assert_eq!(super::extra_host("db=10.0.0.2").unwrap().1, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(super::extra_host("v6:::1").unwrap().1, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(super::extra_host("v6:[fe80::1]").unwrap().1, "fe80::1".parse::<IpAddr>().unwrap());
        for bad in ["db", "db:", "db:nowhere", ":127.0.0.1", "a b:127.0.0.1", "db\n1.2.3.4:1.2.3.4"] {
            assert!(super::extra_host(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn durations_are_docker_s_and_never_overflow() {
        let d = |s: &str| duration(s).unwrap();
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("90"), Duration::from_secs(90));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("2h45m"), Duration::from_secs(9900));
        assert_eq!(d("1d"), Duration::from_secs(86400));
        assert_eq!(d("0s"), Duration::ZERO);
        assert_eq!(d("250us"), Duration::from_micros(250));
        for bad in
            ["", "s", "1x", "m30", "1.2.3s", ".s", "-5s", "1 m", "99999999999999999999999999h", "18446744073709551616"]
        {
            assert!(duration(bad).is_err(), "{bad:?} was taken");
        }
        // At most 100 years: past that, clocks overflow when it is added to now.
        assert!(duration("876000h").is_ok());
        assert!(duration("1000000h").unwrap_err().0.contains("100 years"));
        assert!(duration("5124095576030432h").is_err());
        assert!(since("99999999999999d").is_err());
        assert!(since("10m").unwrap() < chrono::Utc::now());
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(size("512m").unwrap(), 512 << 20);
        assert_eq!(size("1.5k").unwrap(), 1536);
        for bad in ["", "0", "-1m", "nan", "inf", "infm", "99999999999999999999g", "lots", "1e19"] {
            assert!(size(bad).is_err(), "{bad:?} was taken");
        }
    }

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
        assert_eq!(v.source, MountSource::Bind { path: "/srv/data".into(), must_exist: false });
        assert!(mount("site:relative").is_err());
        assert!(mount("./x:/x").is_err(), "no current directory (a configuration file): refused");
        let base = std::path::Path::new("/srv/site");
        for (spec, host) in [("./x:/x", "/srv/site/x"), (".:/x", "/srv/site"), ("../data/./y:/x:ro", "/srv/data/y")] {
            let v = mount_in(spec, Some(base)).unwrap();
            assert_eq!(v.source, MountSource::Bind { path: host.into(), must_exist: false }, "{spec}");
        }
        assert!(mount_in(".hidden:/x", Some(base)).is_err(), "not a path, not a volume name");
        assert_eq!(label("app=site").unwrap(), ("app".into(), "site".into()));
        assert_eq!(label("flag").unwrap(), ("flag".into(), String::new()));
        assert!(label("=x").is_err());
    }

    #[test]
    fn docker_mount_and_tmpfs_flags() {
        let base = Some(std::path::Path::new("/srv"));
        let v = mount_flag("type=volume,source=data,target=/var/lib/mysql,readonly", base).unwrap();
        assert_eq!(
            (v.source, v.target.as_str(), v.read_only),
            (MountSource::Volume { name: "data".into() }, "/var/lib/mysql", true)
        );
        let v = mount_flag("src=data,dst=/d,volume-nocopy", base).unwrap();
        assert!(v.nocopy && !v.read_only, "type=volume is the default");
        let v = mount_flag("type=volume,target=/cache", base).unwrap();
        assert!(v.anonymous && matches!(v.source, MountSource::Volume { .. }));
        let v = mount_flag("type=bind,source=./site,target=/www,ro=true,bind-propagation=rprivate", base).unwrap();
        assert_eq!(v.source, MountSource::Bind { path: "/srv/site".into(), must_exist: true });
        assert!(v.read_only);
        let v = mount_flag("type=tmpfs,destination=/run/app,tmpfs-size=64m,tmpfs-mode=1770", base).unwrap();
        assert_eq!(v.source, MountSource::Tmpfs { size: Some(64 << 20), mode: Some(0o1770), exec: false });
        for bad in [
            "type=bind,target=/x",
            "type=volume,source=v",
            "type=volume,source=v,target=relative",
            "type=nfs,source=v,target=/x",
            "type=tmpfs,source=x,target=/x",
            "type=volume,source=v,target=/x,tmpfs-size=1m",
            "type=bind,source=/x,target=/x,volume-nocopy",
            "type=bind,source=/x,target=/x,bind-propagation=shared",
            "type=volume,source=v,target=/x,readonly=maybe",
            "type=volume,source=v,target=/x,colour=blue",
            "type=tmpfs,target=/x,tmpfs-mode=999",
        ] {
            assert!(mount_flag(bad, base).is_err(), "{bad} was accepted");
        }
        assert!(mount_flag("type=bind,source=./x,target=/x", None).is_err(), "no current directory");
        let t = tmpfs_flag("/run:size=1m,mode=700,noexec").unwrap();
        assert_eq!(t.source, MountSource::Tmpfs { size: Some(1 << 20), mode: Some(0o700), exec: false });
        assert_eq!(tmpfs_flag("/tmp").unwrap().source, MountSource::Tmpfs { size: None, mode: None, exec: false });
        assert_eq!(tmpfs_flag("/tmp:exec").unwrap().source, MountSource::Tmpfs { size: None, mode: None, exec: true });
        assert!(tmpfs_flag("tmp").is_err() && tmpfs_flag("/tmp:uid=5").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("32m").unwrap(), 32 << 20);
        assert_eq!(size("1g").unwrap(), 1 << 30);
        assert_eq!(size("512").unwrap(), 512);
        assert!(size("lots").is_err());
    }
}
