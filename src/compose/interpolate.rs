//! Compose's variable interpolation in values: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or
//! empty), `${VAR-default}` (unset), `${VAR:+other}`, `${VAR+other}`, `${VAR:?message}` and
//! `${VAR?message}` (an error), and `$$` for a literal `$`. Defaults may hold further
//! variables.

/// How deep defaults may nest (`${A:-${B:-…}}`): deeper is refused, never a stack overflow.
const MAX_NESTING: usize = 16;

/// `text` with its variables replaced by `lookup`'s values; an error names what is missing.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    nested(text, lookup, 0)
}

fn nested(text: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> Result<String, String> {
    if depth > MAX_NESTING {
        return Err(format!("variables nest more than {MAX_NESTING} deep"));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end =
                closing_brace(r).ok_or_else(|| format!("invalid interpolation format for {text:?}: no closing }}"))?;
            out.push_str(&braced(&r[..end], text, lookup, depth)?);
            rest = &r[end + 1..];
        } else {
            let n = rest.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
            if n == 0 || rest.as_bytes()[0].is_ascii_digit() {
                // A lone `$` is kept, as Compose keeps it.
                out.push('$');
            } else {
                out.push_str(&lookup(&rest[..n]).unwrap_or_default());
                rest = &rest[n..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, counting nested `${…}` in defaults.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(inner: &str, text: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> Result<String, String> {
    let n = inner.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
    let (name, op) = inner.split_at(n);
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(format!("invalid interpolation format for {text:?}: ${{{inner}}}"));
    }
    let value = lookup(name);
    let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let nested = |s: &str| nested(s, lookup, depth + 1);
    Ok(match op {
        "" => value.unwrap_or_default(),
        _ if op.starts_with(":-") => {
            if set_nonempty {
                value.unwrap_or_default()
            } else {
                nested(&op[2..])?
            }
        }
        _ if op.starts_with('-') => match value {
            Some(v) => v,
            None => nested(&op[1..])?,
        },
        _ if op.starts_with(":+") => {
            if set_nonempty {
                nested(&op[2..])?
            } else {
                String::new()
            }
        }
        _ if op.starts_with('+') => {
            if value.is_some() {
                nested(&op[1..])?
            } else {
                String::new()
            }
        }
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let strict = op.starts_with(":?");
            let message = nested(op.trim_start_matches(':').trim_start_matches('?'))?;
            match value {
                Some(v) if !strict || !v.is_empty() => v,
                _ if message.is_empty() => return Err(format!("required variable {name} is missing a value")),
                _ => return Err(format!("required variable {name} is missing a value: {message}")),
            }
        }
        _ => return Err(format!("invalid interpolation format for {text:?}: ${{{inner}}}")),
    })
}

/// `KEY=VALUE` lines of a `.env` file (comments, blank lines, `export `, and quotes as Compose
/// reads them; values in double quotes may hold `\n`).
pub fn dotenv(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim();
        let v = if let Some(q) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            q.replace("\\n", "\n").replace("\\\"", "\"")
        } else if let Some(q) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            q.to_string()
        } else {
            // An unquoted value ends at a comment.
            v.split(" #").next().unwrap_or_default().trim_end().to_string()
        };
        out.push((k.trim().to_string(), v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "SET" => Some("yes".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        let i = |s: &str| interpolate(s, &vars);
        assert_eq!(i("a $SET b ${SET}c").unwrap(), "a yes b yesc");
        assert_eq!(i("${UNSET:-dflt} ${EMPTY:-dflt} ${EMPTY-dflt}| ${UNSET-x}").unwrap(), "dflt dflt | x");
        assert_eq!(i("${SET:+alt} ${EMPTY:+alt}|${EMPTY+alt}").unwrap(), "alt |alt");
        assert_eq!(i("$$SET costs $5 and $").unwrap(), "$SET costs $5 and $");
        assert_eq!(i("${UNSET:-${SET}}").unwrap(), "yes");
        assert_eq!(i("${UNSET}").unwrap(), "");
        assert!(i("${UNSET:?set the password}").unwrap_err().contains("set the password"));
        assert!(i("${EMPTY:?}").is_err());
        assert_eq!(i("${EMPTY?}").unwrap(), "");
        assert!(i("${SET").is_err());
        assert!(i("${}").is_err());
        assert!(i("${SET!}").is_err());
        let deep = format!("{}x{}", "${U:-".repeat(10_000), "}".repeat(10_000));
        assert!(i(&deep).unwrap_err().contains("nest"));
        assert_eq!(i(&format!("{}x{}", "${U:-".repeat(5), "}".repeat(5))).unwrap(), "x");
    }

    #[test]
    fn dotenv_lines() {
        let got = dotenv("# c\nA=1\nexport B = two \nC=\"x\\ny\"\nD='$raw'\nE=v # note\nbad\n");
        let want = [("A", "1"), ("B", "two"), ("C", "x\ny"), ("D", "$raw"), ("E", "v")];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }
}
