//! The Dockerfile language, as Docker's reference documents it: parser directives (`escape`),
//! comments, line continuations (comments and blank lines inside them are dropped), case-
//! insensitive instructions, `--flag=value` options, JSON (exec) versus shell forms, and the
//! word rules of ENV/LABEL/ARG (quotes, the escape character, `$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR:+alternative}`).
//!
//! Parsing never fails on an unknown instruction: the builder rejects what it does not support,
//! naming the line.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Dockerfile line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// One instruction, continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The line it starts on (1-based).
    pub line: usize,
    /// Upper case: `RUN`, `COPY`, ….
    pub keyword: String,
    /// `--name=value` options before the arguments (`--from=build`, `--chown=1:1`).
    pub flags: Vec<(String, Option<String>)>,
    /// The arguments, as written (after the flags).
    pub rest: String,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }
    /// How the instruction reads in build output and history.
    pub fn display(&self) -> String {
        let flags: String =
            self.flags.iter().map(|(n, v)| v.as_ref().map_or(format!("--{n} "), |v| format!("--{n}={v} "))).collect();
        format!("{} {flags}{}", self.keyword, self.rest)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// Instructions whose leading `--flags` are options.
const TAKES_FLAGS: &[&str] = &["FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"];

pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: only at the very top, before any comment, blank line or instruction.
    let mut seen = std::collections::HashSet::new();
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else { break };
        if !seen.insert(name.clone()) {
            return Err(ParseError { line: i + 1, message: format!("the {name} directive is given twice") });
        }
        if name == "escape" {
            escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError { line: i + 1, message: format!("invalid escape {other:?} (\\ or `)") });
                }
            };
        }
        i += 1;
    }
    let mut instructions = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start();
        i += 1;
        if first.trim().is_empty() || first.starts_with('#') {
            continue;
        }
        let mut joined = String::new();
        let mut piece = first;
        loop {
            match strip_continuation(piece, escape) {
                Some(head) => {
                    joined.push_str(head);
                    // The next line that is neither blank nor a comment continues it.
                    while i < lines.len() && (lines[i].trim().is_empty() || lines[i].trim_start().starts_with('#')) {
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                    piece = lines[i];
                    i += 1;
                }
                None => {
                    joined.push_str(piece);
                    break;
                }
            }
        }
        let joined = joined.trim();
        let (word, rest) = joined.split_once(char::is_whitespace).unwrap_or((joined, ""));
        let keyword = word.to_ascii_uppercase();
        let mut rest = rest.trim_start();
        let mut flags = Vec::new();
        if TAKES_FLAGS.contains(&keyword.as_str()) {
            while let Some(after) = rest.strip_prefix("--") {
                let (flag, tail) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
                let (name, value) = match flag.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (flag.to_string(), None),
                };
                if name.is_empty() {
                    return Err(ParseError { line: start + 1, message: "an empty --flag".into() });
                }
                flags.push((name, value));
                rest = tail.trim_start();
            }
        }
        instructions.push(Instruction { line: start + 1, keyword, flags, rest: rest.trim_end().to_string() });
    }
    Ok(Dockerfile { escape, instructions })
}

fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?.trim();
    let (name, value) = body.split_once('=')?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric())
        || !["escape", "syntax", "check"].contains(&name.as_str())
    {
        return None;
    }
    Some((name, value.trim().to_string()))
}

/// The line without its continuation mark, if it ends with one (trailing blanks allowed).
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    let head = t.strip_suffix(escape)?;
    // An escaped escape at the end is not a continuation only for `\\` inside words; Docker
    // treats any final escape character as a continuation, and so do we.
    Some(head)
}

/// JSON array (exec form) or shell form of RUN, CMD, ENTRYPOINT, SHELL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

pub fn command(rest: &str) -> Command {
    let t = rest.trim();
    if t.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(t)
    {
        return Command::Exec(v);
    }
    // Not valid JSON: Docker runs it as a shell command, brackets and all.
    Command::Shell(t.to_string())
}

/// JSON array form of COPY/ADD/VOLUME arguments, if that is what `rest` is.
pub fn json_list(rest: &str) -> Option<Vec<String>> {
    let t = rest.trim();
    if t.starts_with('[') { serde_json::from_str(t).ok() } else { None }
}

/// Variables visible to expansion.
pub type Vars = HashMap<String, String>;

/// Splits `s` into words as the Dockerfile's shell-like lexer does: whitespace separates words
/// outside quotes; single quotes are literal; double quotes allow `$` expansion and escapes of
/// `"`, `$`, the escape character; outside quotes the escape character takes the next
/// character literally.
pub fn words(s: &str, vars: &Vars, escape: char) -> Result<Vec<String>, String> {
    lex(s, vars, escape, true)
}

/// One word with whitespace kept (legacy `ENV key value with spaces`, WORKDIR, USER…).
pub fn word(s: &str, vars: &Vars, escape: char) -> Result<String, String> {
    Ok(lex(s.trim(), vars, escape, false)?.into_iter().next().unwrap_or_default())
}

fn lex(s: &str, vars: &Vars, escape: char, split: bool) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if split && c.is_whitespace() {
            if in_word {
                out.push(std::mem::take(&mut cur));
                in_word = false;
            }
            i += 1;
            continue;
        }
        in_word = true;
        if c == escape {
            if let Some(&next) = chars.get(i + 1) {
                cur.push(next);
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match c {
            '\'' => {
                let end = chars[i + 1..].iter().position(|&x| x == '\'').ok_or("unmatched single quote")?;
                cur.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            }
            '"' => {
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else { return Err("unmatched double quote".into()) };
                    if d == '"' {
                        i += 1;
                        break;
                    }
                    if d == escape && matches!(chars.get(i + 1), Some('"') | Some('$')) {
                        cur.push(chars[i + 1]);
                        i += 2;
                    } else if d == escape && chars.get(i + 1) == Some(&escape) {
                        cur.push(escape);
                        i += 2;
                    } else if d == '$' {
                        i = expand_at(&chars, i, vars, &mut cur)?;
                    } else {
                        cur.push(d);
                        i += 1;
                    }
                }
            }
            '$' => i = expand_at(&chars, i, vars, &mut cur)?,
            _ => {
                cur.push(c);
                i += 1;
            }
        }
    }
    if in_word || !split {
        out.push(cur);
    }
    Ok(out)
}

/// Expands the variable reference starting at `chars[i] == '$'`; returns the index after it.
fn expand_at(chars: &[char], i: usize, vars: &Vars, out: &mut String) -> Result<usize, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let close = chars[i + 2..].iter().position(|&c| c == '}').ok_or("missing } in ${…}")?;
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let (name, op) = match inner.find(':') {
                Some(p) => (&inner[..p], Some(&inner[p..])),
                None => (inner.as_str(), None),
            };
            if name.is_empty() || !name.chars().all(is_name) {
                return Err(format!("bad substitution ${{{inner}}}"));
            }
            let value = vars.get(name).filter(|v| !v.is_empty());
            match op {
                None => out.push_str(vars.get(name).map(String::as_str).unwrap_or("")),
                Some(op) if op.starts_with(":-") => match value {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&op[2..]),
                },
                Some(op) if op.starts_with(":+") => {
                    if value.is_some() {
                        out.push_str(&op[2..]);
                    }
                }
                Some(op) => return Err(format!("unsupported modifier {op:?} in ${{{inner}}}")),
            }
            Ok(i + 3 + close)
        }
        Some(&c) if is_name(c) => {
            let len = chars[i + 1..].iter().take_while(|&&c| is_name(c)).count();
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
            Ok(i + 1 + len)
        }
        _ => {
            out.push('$');
            Ok(i + 1)
        }
    }
}

/// `key=value …` pairs (ENV, LABEL, ARG), or, when `legacy` and the first word has no `=`,
/// the old `ENV key value with spaces` form.
pub fn key_values(s: &str, vars: &Vars, escape: char, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let t = s.trim();
    let first = t.split_whitespace().next().unwrap_or("");
    if legacy && !first.contains('=') {
        let value = t[first.len()..].trim();
        if value.is_empty() {
            return Err(format!("{first} needs a value"));
        }
        return Ok(vec![(first.to_string(), word(value, vars, escape)?)]);
    }
    let mut out = Vec::new();
    for w in words(t, vars, escape)? {
        let (k, v) = w.split_once('=').ok_or_else(|| format!("{w:?} is not key=value"))?;
        if k.is_empty() {
            return Err(format!("{w:?} has an empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        let df = parse(
            "# syntax=docker/dockerfile:1\nFROM debian:12 AS base\n\n# a comment\nRUN apt-get update && \\\n    # inside a continuation\n\n    apt-get install -y pandoc \\   \n    python3\nrun echo lower\n",
        )
        .unwrap();
        let i = &df.instructions;
        assert_eq!(i.len(), 3);
        assert_eq!((i[0].line, i[0].keyword.as_str(), i[0].rest.as_str()), (2, "FROM", "debian:12 AS base"));
        assert_eq!(i[1].line, 5);
        assert_eq!(i[1].rest, "apt-get update &&     apt-get install -y pandoc     python3");
        assert_eq!((i[2].keyword.as_str(), i[2].line), ("RUN", 10));
    }

    #[test]
    fn the_escape_directive_changes_the_continuation_character() {
        let df = parse("# escape=`\nFROM scratch\nCOPY a `\n  C:\\dir\\\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions[1].rest, "a   C:\\dir\\");
        // Only at the top: after an instruction it is a comment.
        let df = parse("FROM scratch\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(df.instructions[1].rest, "a  b");
        assert!(parse("# escape=x\nFROM scratch\n").is_err());
    }

    #[test]
    fn exec_and_shell_forms() {
        assert_eq!(
            command(r#"["/bin/bash", "/start.sh"]"#),
            Command::Exec(vec!["/bin/bash".into(), "/start.sh".into()])
        );
        assert_eq!(command("python3 -m http.server 8888"), Command::Shell("python3 -m http.server 8888".into()));
        // Not JSON (single quotes): shell form, as Docker does.
        assert_eq!(command("['a']"), Command::Shell("['a']".into()));
    }

    #[test]
    fn flags_are_split_from_arguments() {
        let df = parse("COPY --from=build --chown=1:2 /out /app\nRUN --network=none true\nENV --x=1\n").unwrap();
        let c = &df.instructions[0];
        assert_eq!(c.flag("from"), Some("build"));
        assert_eq!(c.flag("chown"), Some("1:2"));
        assert_eq!(c.rest, "/out /app");
        assert_eq!(df.instructions[1].flag("network"), Some("none"));
        assert_eq!(df.instructions[2].rest, "--x=1", "ENV takes no flags");
    }

    #[test]
    fn both_env_forms_quotes_and_escapes() {
        let v = vars(&[("NAME", "lib"), ("EMPTY", "")]);
        assert_eq!(key_values("MY_VAR my value", &v, '\\', true).unwrap(), vec![("MY_VAR".into(), "my value".into())]);
        assert_eq!(
            key_values(r#"A=1 B="two words" C='$NAME' D=$NAME E=\$NAME F="x\"y""#, &v, '\\', true).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "$NAME".into()),
                ("D".into(), "lib".into()),
                ("E".into(), "$NAME".into()),
                ("F".into(), "x\"y".into()),
            ]
        );
        assert_eq!(key_values(r"G=a\ b", &v, '\\', true).unwrap(), vec![("G".into(), "a b".into())]);
        assert!(key_values("H", &v, '\\', false).is_err());
        assert!(key_values("I=\"open", &v, '\\', true).is_err());
    }

    #[test]
    fn variable_substitution() {
        let v = vars(&[("V", "1.2"), ("EMPTY", "")]);
        let w = |s: &str| words(s, &v, '\\').unwrap().join("|");
        assert_eq!(w("app-$V.tar /opt/${V}/"), "app-1.2.tar|/opt/1.2/");
        assert_eq!(w("${MISSING:-default} ${V:-x} ${EMPTY:-e}"), "default|1.2|e");
        assert_eq!(w("${V:+set} ${MISSING:+set}x"), "set|x");
        assert_eq!(w("$ cost"), "$|cost");
        assert!(words("${V", &v, '\\').is_err());
    }

    #[test]
    fn arg_before_from_and_json_lists() {
        let df = parse("ARG BASE=debian:12\nFROM ${BASE}\nVOLUME [\"/data\", \"/logs\"]\n").unwrap();
        assert_eq!(df.instructions[0].keyword, "ARG");
        assert_eq!(json_list(&df.instructions[2].rest).unwrap(), vec!["/data", "/logs"]);
        assert_eq!(json_list("/data /logs"), None);
    }
}
