//! Go-template-style `--format` strings, as Docker users type them: `{{.Names}}`,
//! `table {{.ID}}\t{{.Status}}`, `{{json .Config.Env}}`, `{{.State.Health.Status}}`,
//! `{{range .Mounts}}{{.Source}} {{end}}`, `{{if .State.Running}}up{{else}}down{{end}}`,
//! `{{index .Config.Labels "app"}}`, `{{upper .Name}}`, `{{lower …}}`, `{{len …}}`.
//!
//! A subset of Go's text/template, over the JSON shape of what a command prints: fields by
//! name (case-sensitive, as in Go), the functions above, `range`, `if`/`else`, `with`. Anything
//! else is refused with the place it was found, never printed as it stood.

use serde_json::Value;

use crate::cli::UsageError;

/// A parsed template. `table` templates print a header line first.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
    table: bool,
}

#[derive(Debug)]
enum Node {
    Text(String),
    Expr(Expr),
    Range(Expr, Vec<Node>),
    If(Expr, Vec<Node>, Vec<Node>),
    With(Expr, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
enum Expr {
    /// `.A.B` (an empty path is `.`).
    Field(Vec<String>),
    Str(String),
    Call(Func, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Json,
    Upper,
    Lower,
    Len,
    Index,
    Join,
}

fn err(template: &str, what: impl std::fmt::Display) -> UsageError {
    UsageError(format!("invalid --format template {template:?}: {what}"))
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, UsageError> {
        let (table, body) = match src.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (true, rest.trim_start()),
            _ => (false, src),
        };
        // Docker's habit: `\t` and `\n` typed in a shell arrive as two characters.
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut tokens = tokenize(&body).map_err(|e| err(src, e))?.into_iter().peekable();
        let (nodes, end) = parse_nodes(&mut tokens).map_err(|e| err(src, e))?;
        if let Some(end) = end {
            return Err(err(src, format!("unexpected {{{{{end}}}}}")));
        }
        Ok(Template { nodes, table })
    }

    /// Whether the template asked for a header line (`table …`).
    pub fn is_table(&self) -> bool {
        self.table
    }

    /// The header line of a `table` template: each field's name in capitals, as Docker
    /// prints the columns it knows (`{{.ID}}` → `CONTAINER ID` is left to `headers`).
    pub fn header(&self, headers: &dyn Fn(&str) -> Option<&'static str>) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Expr(e) => out.push_str(&header_of(e, headers)),
                _ => {}
            }
        }
        out
    }

    /// The template applied to one value.
    pub fn render(&self, value: &Value) -> Result<String, UsageError> {
        let mut out = String::new();
        render_nodes(&self.nodes, value, &mut out)?;
        Ok(out)
    }
}

fn header_of(e: &Expr, headers: &dyn Fn(&str) -> Option<&'static str>) -> String {
    match e {
        Expr::Field(path) => {
            let name = path.last().map(String::as_str).unwrap_or("");
            headers(name).map(str::to_string).unwrap_or_else(|| name.to_uppercase())
        }
        Expr::Call(_, args) => args.last().map(|a| header_of(a, headers)).unwrap_or_default(),
        Expr::Str(s) => s.to_uppercase(),
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Text(String),
    Action(String),
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Token::Text(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("an action opened with {{ is never closed")?;
        let mut action = &after[..end];
        // `{{- x -}}` trims the space around the action, as Go's does.
        if let Some(a) = action.strip_prefix('-') {
            action = a;
            if let Some(Token::Text(t)) = out.last_mut() {
                t.truncate(t.trim_end().len());
            }
        }
        let trim_after = action.ends_with('-') && action.len() > 1;
        if trim_after {
            action = &action[..action.len() - 1];
        }
        out.push(Token::Action(action.trim().to_string()));
        rest = &after[end + 2..];
        if trim_after {
            rest = rest.trim_start();
        }
    }
    if !rest.is_empty() {
        out.push(Token::Text(rest.to_string()));
    }
    Ok(out)
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<Token>>;

/// How deep `range`, `if` and `with` may nest (the parser and the printer recurse).
const MAX_DEPTH: usize = 64;

/// Nodes up to an `end` or `else` (returned) or the end of input (`None`).
fn parse_nodes(tokens: &mut Tokens) -> Result<(Vec<Node>, Option<String>), String> {
    parse_nested(tokens, 0)
}

fn parse_nested(tokens: &mut Tokens, depth: usize) -> Result<(Vec<Node>, Option<String>), String> {
    if depth > MAX_DEPTH {
        return Err(format!("blocks nested more than {MAX_DEPTH} deep"));
    }
    let mut nodes = Vec::new();
    while let Some(t) = tokens.next() {
        let action = match t {
            Token::Text(s) => {
                nodes.push(Node::Text(s));
                continue;
            }
            Token::Action(a) => a,
        };
        if action == "end" || action == "else" {
            return Ok((nodes, Some(action)));
        }
        let (word, rest) = action.split_once(char::is_whitespace).unwrap_or((&action, ""));
        match word {
            "range" | "if" | "with" => {
                let cond = parse_expr(rest.trim())?;
                let (body, end) = parse_nested(tokens, depth + 1)?;
                let (otherwise, end) = match end.as_deref() {
                    Some("else") if word != "range" => parse_nested(tokens, depth + 1)?,
                    _ => (Vec::new(), end),
                };
                if end.as_deref() != Some("end") {
                    return Err(format!("{{{{{word}}}}} has no {{{{end}}}}"));
                }
                nodes.push(match word {
                    "range" => Node::Range(cond, body),
                    "if" => Node::If(cond, body, otherwise),
                    _ => Node::With(cond, body, otherwise),
                });
            }
            "" => return Err("an empty action {{}}".into()),
            _ => nodes.push(Node::Expr(parse_expr(&action)?)),
        }
    }
    Ok((nodes, None))
}

fn parse_expr(s: &str) -> Result<Expr, String> {
    let words = split_words(s)?;
    let Some(first) = words.first() else { return Err("an action with nothing in it".into()) };
    let func = match first.as_str() {
        "json" => Some(Func::Json),
        "upper" => Some(Func::Upper),
        "lower" => Some(Func::Lower),
        "len" => Some(Func::Len),
        "index" => Some(Func::Index),
        "join" => Some(Func::Join),
        _ => None,
    };
    match func {
        Some(f) => {
            let args = words[1..].iter().map(|w| operand(w)).collect::<Result<Vec<_>, _>>()?;
            let arity_ok = match f {
                Func::Index => args.len() >= 2,
                Func::Join => args.len() == 2,
                _ => args.len() == 1,
            };
            if !arity_ok {
                return Err(format!("wrong number of arguments to {first}"));
            }
            Ok(Expr::Call(f, args))
        }
        None if words.len() == 1 => operand(first),
        None => Err(format!("unknown function {first:?} (known: json, upper, lower, len, index, join)")),
    }
}

fn operand(w: &str) -> Result<Expr, String> {
    if w == "." {
        return Ok(Expr::Field(Vec::new()));
    }
    if let Some(path) = w.strip_prefix('.') {
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_')) {
            return Err(format!("bad field {w:?}"));
        }
        return Ok(Expr::Field(parts));
    }
    if let Some(s) = w.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Ok(Expr::Str(s.replace("\\\"", "\"")));
    }
    if w.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Expr::Str(w.to_string()));
    }
    Err(format!("unknown function or value {w:?}"))
}

/// Words separated by spaces; quoted strings kept whole.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            w.push(chars.next().expect("peeked"));
            let mut closed = false;
            while let Some(c) = chars.next() {
                w.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        w.push(n);
                    }
                } else if c == '"' {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err("a string is never closed".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
        }
        out.push(w);
    }
    Ok(out)
}

/// Fields that are maps in Docker's Go structures (not structs): a missing key there is no
/// error but Go's "no value".
const MAP_FIELDS: &[&str] = &["Labels", "Options", "Networks", "ExposedPorts", "Volumes", "Ports", "Annotations"];

/// A field path from `dot`: `None` when its last step is a key missing from a map field.
fn field(path: &[String], dot: &Value) -> Result<Option<Value>, UsageError> {
    let mut v = dot;
    for (i, p) in path.iter().enumerate() {
        v = match v {
            Value::Object(m) => match m.get(p) {
                Some(next) => next,
                None if i > 0 && MAP_FIELDS.contains(&path[i - 1].as_str()) => return Ok(None),
                None => {
                    let mut known: Vec<&str> = m.keys().map(String::as_str).collect();
                    known.sort();
                    return Err(UsageError(format!(
                        "--format: no field .{} here (fields: {})",
                        path[..=i].join("."),
                        known.join(", ")
                    )));
                }
            },
            Value::Null => return Ok(Some(Value::Null)),
            _ => return Err(UsageError(format!("--format: .{} is not an object", path[..i].join(".")))),
        };
    }
    Ok(Some(v.clone()))
}

fn eval(e: &Expr, dot: &Value) -> Result<Value, UsageError> {
    match e {
        Expr::Str(s) => Ok(Value::String(s.clone())),
        Expr::Field(path) => Ok(field(path, dot)?.unwrap_or(Value::Null)),
        Expr::Call(f, args) => {
            let vals = args.iter().map(|a| eval(a, dot)).collect::<Result<Vec<_>, _>>()?;
            Ok(match f {
                Func::Json => Value::String(serde_json::to_string(&vals[0]).expect("a JSON value serialises")),
                Func::Upper => Value::String(plain(&vals[0]).to_uppercase()),
                Func::Lower => Value::String(plain(&vals[0]).to_lowercase()),
                Func::Len => Value::from(match &vals[0] {
                    Value::Array(a) => a.len(),
                    Value::Object(m) => m.len(),
                    Value::String(s) => s.len(),
                    Value::Null => 0,
                    other => return Err(UsageError(format!("--format: len of {other}"))),
                }),
                Func::Index => {
                    let mut v = vals[0].clone();
                    for k in &vals[1..] {
                        v = match (&v, k) {
                            (Value::Object(m), _) => m.get(&plain(k)).cloned().unwrap_or(Value::Null),
                            (Value::Array(a), _) => {
                                plain(k).parse::<usize>().ok().and_then(|i| a.get(i).cloned()).unwrap_or(Value::Null)
                            }
                            _ => Value::Null,
                        };
                    }
                    v
                }
                Func::Join => match &vals[0] {
                    Value::Array(a) => Value::String(a.iter().map(plain).collect::<Vec<_>>().join(&plain(&vals[1]))),
                    other => Value::String(plain(other)),
                },
            })
        }
    }
}

/// How Go prints a value: strings bare, numbers and booleans as such, nothing for null,
/// lists as `[a b]`, maps as `map[k:v]`.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            format!("map[{}]", m.iter().map(|(k, v)| format!("{k}:{}", plain(v))).collect::<Vec<_>>().join(" "))
        }
        other => other.to_string(),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn render_nodes(nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), UsageError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            // Go prints a key missing from a map as "<no value>".
            Node::Expr(Expr::Field(path)) => match field(path, dot)? {
                Some(v) => out.push_str(&plain(&v)),
                None => out.push_str("<no value>"),
            },
            Node::Expr(e) => out.push_str(&plain(&eval(e, dot)?)),
            Node::Range(e, body) => match eval(e, dot)? {
                Value::Array(items) => {
                    for item in &items {
                        render_nodes(body, item, out)?;
                    }
                }
                Value::Object(m) => {
                    for item in m.values() {
                        render_nodes(body, item, out)?;
                    }
                }
                Value::Null => {}
                other => return Err(UsageError(format!("--format: cannot range over {other}"))),
            },
            Node::If(e, yes, no) => render_nodes(if truthy(&eval(e, dot)?) { yes } else { no }, dot, out)?,
            Node::With(e, yes, no) => {
                let v = eval(e, dot)?;
                if truthy(&v) { render_nodes(yes, &v, out)? } else { render_nodes(no, dot, out)? }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn fields_functions_and_blocks_render_as_go_would() {
        let c = json!({
            "Names": "web", "ID": "0123456789ab",
            "State": {"Status": "running", "Running": true, "Health": {"Status": "healthy"}},
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"app": "site", "tier": "front"}},
            "Mounts": [{"Source": "/a", "Destination": "/x"}, {"Source": "/b", "Destination": "/y"}],
            "Empty": null,
        });
        assert_eq!(run("{{.Names}}", &c), "web");
        assert_eq!(run(r"{{.ID}}\t{{.Names}}", &c), "0123456789ab\tweb");
        assert_eq!(run("{{.State.Health.Status}}", &c), "healthy");
        assert_eq!(run("{{json .Config.Env}}", &c), r#"["A=1","B=2"]"#);
        assert_eq!(run("{{.Config.Env}}", &c), "[A=1 B=2]");
        assert_eq!(run(r#"{{index .Config.Labels "app"}}"#, &c), "site");
        assert_eq!(run(r#"{{index .Config.Labels "nope"}}"#, &c), "");
        // A key missing from a map is Go's "no value" (a missing struct field is an error).
        assert_eq!(run("{{.Config.Labels.app}}/{{.Config.Labels.missing}}", &c), "site/<no value>");
        assert_eq!(run("{{if .Config.Labels.missing}}set{{else}}unset{{end}}", &c), "unset");
        assert!(Template::parse("{{.Config.Nope}}").unwrap().render(&c).is_err());
        assert_eq!(run("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", &c), "/a:/x /b:/y ");
        assert_eq!(run("{{if .State.Running}}up{{else}}down{{end}}", &c), "up");
        assert_eq!(run("{{if .Empty}}set{{else}}unset{{end}}", &c), "unset");
        assert_eq!(run("{{with .State.Health}}{{.Status}}{{end}}", &c), "healthy");
        assert_eq!(run("{{upper .Names}} {{len .Mounts}}", &c), "WEB 2");
        assert_eq!(run(r#"{{join .Config.Env ","}}"#, &c), "A=1,B=2");
        assert_eq!(run("{{- .Names -}}  \n", &c), "web");
        assert_eq!(run("{{json .}}", &json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn a_table_template_has_a_header() {
        let t = Template::parse(r"table {{.ID}}\t{{.Names}}").unwrap();
        assert!(t.is_table());
        let h = t.header(&|f| (f == "ID").then_some("CONTAINER ID"));
        assert_eq!(h, "CONTAINER ID\tNAMES");
        assert!(!Template::parse("{{.ID}}").unwrap().is_table());
        assert!(!Template::parse("tablet").unwrap().is_table());
    }

    #[test]
    fn mistakes_are_refused_with_what_is_known() {
        for bad in ["{{.Names", "{{range .Mounts}}x", "{{printf \"%s\" .Names}}", "{{.Na-mes}}", "{{}}", "{{end}}"] {
            assert!(Template::parse(bad).is_err(), "{bad} was accepted");
        }
        // Nesting is bounded (the parser recurses): an error, not a stack overflow.
        let deep = format!("{}x{}", "{{if 1}}".repeat(20_000), "{{end}}".repeat(20_000));
        assert!(Template::parse(&deep).unwrap_err().0.contains("nested"));
        let fine = format!("{}x{}", "{{if 1}}".repeat(10), "{{end}}".repeat(10));
        assert_eq!(Template::parse(&fine).unwrap().render(&json!({})).unwrap(), "x");
        let e = Template::parse("{{.Nmes}}").unwrap().render(&json!({"Names": "web", "ID": "x"})).unwrap_err();
        assert!(e.0.contains("no field .Nmes") && e.0.contains("ID, Names"), "{}", e.0);
    }
}
