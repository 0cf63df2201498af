//! Registry credentials, kept where Docker and Podman keep them so one `login` serves all three
//! tools: Docker's `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`) and Podman's
//! `auth.json` (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
//! `/run/containers/<uid>/auth.json`). Both hold `{"auths": {"HOST": {"auth": base64(user:pass)}}}`;
//! Docker's may instead name a credential helper (`credsStore`, `credHelpers`), which is asked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, not even in debug logs.
        write!(f, "Credentials {{ username: {:?}, password: <hidden> }}", self.username)
    }
}

/// Docker Hub's key in the files.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

fn key_for(registry: &str) -> String {
    if registry == "docker.io" || registry == "registry-1.docker.io" || registry == "index.docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// The host a key in `auths` names (keys may be URLs: `https://host/v1/`).
fn host_of_key(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

pub fn docker_config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => home().join(".docker/config.json"),
    }
}

pub fn podman_auth_path() -> PathBuf {
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return PathBuf::from(f);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("containers/auth.json"),
        None => PathBuf::from(format!("/run/containers/{}/auth.json", rustix::process::getuid().as_raw())),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"))
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable credentials file");
            None
        }
    }
}

fn decode_auth(entry: &Value) -> Option<Credentials> {
    let encoded = entry.get("auth")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some(Credentials { username: user.to_string(), password: pass.to_string() })
}

fn from_file(path: &Path, registry: &str) -> Option<Credentials> {
    let config = read_json(path)?;
    let key = key_for(registry);
    // A credential helper for this registry, or for all.
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.get(&key).or_else(|| h.get(registry)))
        .or_else(|| config.get("credsStore"))
        .and_then(Value::as_str);
    if let Some(helper) = helper
        && let Some(c) = from_helper(helper, &key)
    {
        return Some(c);
    }
    let auths = config.get("auths")?.as_object()?;
    auths
        .get(&key)
        .and_then(decode_auth)
        .or_else(|| auths.iter().find(|(k, _)| host_of_key(k) == registry).and_then(|(_, v)| decode_auth(v)))
}

/// Asks `docker-credential-HELPER get` (the credential helper protocol).
fn from_helper(helper: &str, key: &str) -> Option<Credentials> {
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(key.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Credentials {
        username: v.get("Username")?.as_str()?.to_string(),
        password: v.get("Secret")?.as_str()?.to_string(),
    })
}

/// The stored credentials for `registry` (`host[:port]`), Podman's file first, as Podman does.
pub fn lookup(registry: &str) -> Option<Credentials> {
    from_file(&podman_auth_path(), registry).or_else(|| from_file(&docker_config_path(), registry))
}

fn update(path: &Path, f: impl FnOnce(&mut Map<String, Value>)) -> std::io::Result<()> {
    let mut config = read_json(path).unwrap_or_else(|| json!({}));
    if !config.is_object() {
        config = json!({});
    }
    let obj = config.as_object_mut().expect("an object");
    let auths = obj.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    f(auths.as_object_mut().expect("an object"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(&config).map_err(std::io::Error::other)?;
    // Secrets: readable by the owner only, written atomically.
    crate::fsutil::write_atomic(path, &bytes)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
}

/// Stores credentials for `registry` in Docker's and Podman's files; returns the files written.
pub fn store(registry: &str, creds: &Credentials) -> std::io::Result<Vec<PathBuf>> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.password));
    let key = key_for(registry);
    let mut written = Vec::new();
    for path in [docker_config_path(), podman_auth_path()] {
        update(&path, |auths| {
            auths.insert(key.clone(), json!({ "auth": encoded }));
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Removes `registry`'s credentials from both files; returns whether any were there.
pub fn remove(registry: &str) -> std::io::Result<bool> {
    let key = key_for(registry);
    let mut found = false;
    for path in [docker_config_path(), podman_auth_path()] {
        let Some(config) = read_json(&path) else { continue };
        let present = config
            .get("auths")
            .and_then(Value::as_object)
            .is_some_and(|a| a.keys().any(|k| *k == key || host_of_key(k) == registry));
        if present {
            update(&path, |auths| auths.retain(|k, _| *k != key && host_of_key(k) != registry))?;
            found = true;
        }
    }
    Ok(found)
}

/// `WWW-Authenticate` challenges: `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    // key="value" pairs; values may contain commas (scopes do), so split on quotes.
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, n)| (v, n)),
        };
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            "scope" => scope = Some(value.to_string()),
            _ => {}
        }
        rest = next;
    }
    Some(Challenge::Bearer { realm: realm?, service, scope })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn credentials_round_trip_through_both_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: tests in this module set these variables only here.
        unsafe {
            std::env::set_var("DOCKER_CONFIG", dir.path().join("docker"));
            std::env::set_var("REGISTRY_AUTH_FILE", dir.path().join("podman/auth.json"));
        }
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::write(
            dir.path().join("docker/config.json"),
            r#"{"auths": {"other:1": {"auth": "eDp5"}}, "psFormat": "x"}"#,
        )
        .unwrap();
        let c = Credentials { username: "lib".into(), password: "p:w".into() };
        let files = store("127.0.0.1:5001", &c).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(lookup("127.0.0.1:5001"), Some(c.clone()));
        let docker: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
        assert_eq!(docker["psFormat"], "x", "other settings are kept");
        assert!(docker["auths"]["other:1"].is_object());
        assert!(!format!("{c:?}").contains("p:w"));
        assert!(remove("127.0.0.1:5001").unwrap());
        assert_eq!(lookup("127.0.0.1:5001"), None);
        assert!(!remove("127.0.0.1:5001").unwrap());
        assert_eq!(lookup("other:1").unwrap().username, "x");
    }
}
