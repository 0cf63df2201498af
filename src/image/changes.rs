//! Dockerfile-style configuration instructions (`CMD`, `ENV`, `EXPOSE`, …) applied to an image
//! configuration, as `docker import --change` and `docker commit --change` accept them.
//!
//! The argument forms follow Dockerfile rules: a JSON array is the exec form, anything else
//! the shell form (`/bin/sh -c "…"`); `ENV`/`LABEL` take `key=value` pairs with quotes, or the
//! legacy `ENV key value`.

use super::spec::ContainerConfig;

#[derive(Debug, thiserror::Error)]
#[error("invalid change {line:?}: {reason}")]
pub struct ChangeError {
    pub line: String,
    pub reason: String,
}

/// Applies one instruction line to `config`.
pub fn apply_change(config: &mut ContainerConfig, line: &str) -> Result<(), ChangeError> {
    let err = |reason: &str| ChangeError { line: line.to_string(), reason: reason.to_string() };
    let line_trim = line.trim();
    let (word, rest) = line_trim.split_once(char::is_whitespace).unwrap_or((line_trim, ""));
    let rest = rest.trim();
    let instruction = word.to_ascii_uppercase();
    if rest.is_empty() && instruction != "CMD" && instruction != "ENTRYPOINT" {
        return Err(err(&format!("{instruction} needs an argument")));
    }
    match instruction.as_str() {
        "CMD" => config.cmd = Some(command_form(rest).map_err(|r| err(&r))?),
        "ENTRYPOINT" => {
            config.entrypoint = Some(command_form(rest).map_err(|r| err(&r))?);
            // Docker resets an inherited CMD when the entrypoint changes.
            config.cmd = None;
        }
        "ENV" => {
            for (k, v) in key_values(rest, true).map_err(|r| err(&r))? {
                config.set_env(&k, &v);
            }
        }
        "LABEL" => {
            for (k, v) in key_values(rest, false).map_err(|r| err(&r))? {
                config.labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            for spec in split_words(rest).map_err(|r| err(&r))? {
                for port in expand_port(&spec).map_err(|r| err(&r))? {
                    config.exposed_ports.insert(port, serde_json::json!({}));
                }
            }
        }
        "VOLUME" => {
            let paths = if rest.starts_with('[') {
                json_array(rest).map_err(|r| err(&r))?
            } else {
                split_words(rest).map_err(|r| err(&r))?
            };
            for p in paths {
                if !p.starts_with('/') {
                    return Err(err(&format!("volume path {p:?} must be absolute")));
                }
                config.volumes.insert(p, serde_json::json!({}));
            }
        }
        "WORKDIR" => {
            let dir = rest.to_string();
            config.working_dir = Some(match (&config.working_dir, dir.starts_with('/')) {
                (Some(base), false) => format!("{}/{}", base.trim_end_matches('/'), dir),
                (None, false) => format!("/{dir}"),
                _ => dir,
            });
        }
        "USER" => config.user = Some(single_word(rest).map_err(|r| err(&r))?),
        "STOPSIGNAL" => config.stop_signal = Some(single_word(rest).map_err(|r| err(&r))?),
        "ONBUILD" => {}
        other => {
            return Err(err(&format!(
                "{other} cannot be used as a change (allowed: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)"
            )));
        }
    }
    Ok(())
}

/// Exec form (JSON array) or shell form (`/bin/sh -c <rest>`).
pub fn command_form(rest: &str) -> Result<Vec<String>, String> {
    if rest.starts_with('[')
        && let Ok(v) = json_array(rest)
    {
        return Ok(v);
    }
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

pub fn json_array(s: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(s).map_err(|e| format!("not a JSON array of strings: {e}"))
}

fn single_word(s: &str) -> Result<String, String> {
    let words = split_words(s)?;
    match words.as_slice() {
        [w] => Ok(w.clone()),
        _ => Err("expected exactly one argument".into()),
    }
}

/// `key=value` pairs (values may be quoted), or with `legacy_space`, `key value…`.
pub fn key_values(s: &str, legacy_space: bool) -> Result<Vec<(String, String)>, String> {
    let words = split_words(s)?;
    let first_has_eq = words.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        if legacy_space && words.len() >= 2 {
            // ENV key value with spaces: the value is the raw rest of the line.
            let (k, v) = s.trim().split_once(char::is_whitespace).expect("two words");
            return Ok(vec![(k.to_string(), unquote(v.trim())?)]);
        }
        return Err("expected key=value".into());
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("expected key=value, got {w:?}")),
        })
        .collect()
}

fn unquote(s: &str) -> Result<String, String> {
    let words = split_words(s)?;
    Ok(words.join(" "))
}

/// Splits on unquoted white space, honouring "double", 'single' quotes and backslash escapes.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(n) => cur.push(n),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `80` → `80/tcp`; `53/udp`; `8000-8002` → three ports.
pub fn expand_port(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol in port {spec:?}"));
    }
    let parse = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| format!("invalid port {spec:?}"));
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(ports)?, parse(ports)?),
    };
    if hi < lo {
        return Err(format!("invalid port range {spec:?}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(lines: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        for l in lines {
            apply_change(&mut c, l).unwrap_or_else(|e| panic!("{e}"));
        }
        c
    }

    #[test]
    fn exec_and_shell_forms() {
        let c = applied(&[r#"CMD ["/bin/httpd", "-f"]"#]);
        assert_eq!(c.cmd.unwrap(), vec!["/bin/httpd", "-f"]);
        let c = applied(&["cmd echo hi && sleep 1"]);
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh", "-c", "echo hi && sleep 1"]);
        let c = applied(&["CMD [not json"]);
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh", "-c", "[not json"]);
    }

    #[test]
    fn env_forms() {
        let c = applied(&["ENV A=1 B=\"two words\" C=a\\ b", "ENV LEGACY some value here"]);
        assert_eq!(c.env, vec!["A=1", "B=two words", "C=a b", "LEGACY=some value here"]);
    }

    #[test]
    fn expose_volume_workdir_user() {
        let c = applied(&[
            "EXPOSE 80 53/udp 8000-8001",
            "VOLUME [\"/data\"]",
            "VOLUME /a /b",
            "WORKDIR /srv",
            "WORKDIR www",
            "USER 1000:1000",
        ]);
        let ports: Vec<_> = c.exposed_ports.keys().cloned().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        assert_eq!(c.volumes.keys().cloned().collect::<Vec<_>>(), vec!["/a", "/b", "/data"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv/www"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn errors_name_the_line() {
        let mut c = ContainerConfig::default();
        let e = apply_change(&mut c, "RUN rm -rf /").unwrap_err();
        assert!(e.to_string().contains("RUN rm -rf /"), "{e}");
        assert!(apply_change(&mut c, "EXPOSE 99999").is_err());
        assert!(apply_change(&mut c, "VOLUME data").is_err());
        assert!(apply_change(&mut c, "ENV A=\"open").is_err());
    }
}
