//! A YAML document as a tree whose every node knows its line, so that what Compose support
//! refuses can be named where it is written. Anchors and aliases are resolved (an alias is a
//! copy of its anchor's node) and merge keys (`<<: *base`, `<<: [*a, *b]`) are applied, as
//! Compose files use them to share settings between services.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One node and the line (1-based) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// A scalar as written (`quoted` when it was in quotes: never a number, bool or null).
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys in the order written; a key given twice is refused while loading.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text (numbers and booleans as written), if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.value == Value::Null
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// What kind of node this is, for messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing",
            Value::Scalar { .. } => "a single value",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

/// The most a document may hold once its aliases are expanded, in nodes and in bytes of
/// text: a small file whose aliases nest ("a billion laughs") is refused, never expanded.
const MAX_NODES: usize = 1_000_000;
const MAX_BYTES: usize = 64 << 20;
/// How deep collections may nest (the tree is walked recursively).
const MAX_DEPTH: usize = 64;

/// Parses the first document of `text`.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut b = Builder { stack: Vec::new(), anchors: HashMap::new(), root: None, error: None, nodes: 0, bytes: 0 };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, false).map_err(|e| YamlError { line: e.marker().line(), message: e.info().to_string() })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.root.unwrap_or(Node { line: 1, value: Value::Null }))
}

/// A collection being built, with its anchor.
enum Open {
    Seq { line: usize, anchor: usize, items: Vec<Node> },
    Map { line: usize, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node> },
}

struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<YamlError>,
    /// Nodes and bytes of text made so far, aliases counted at their expanded size.
    nodes: usize,
    bytes: usize,
}

impl Builder {
    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { line, message });
        }
    }

    /// Places a finished node into its parent (or as the document).
    fn place(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { key, .. }) if key.is_none() => *key = Some(node),
            Some(Open::Map { entries, key, .. }) => {
                let k = key.take().expect("a key was read first");
                if k.as_str() == Some("<<") && !matches!(&k.value, Value::Scalar { quoted: true, .. }) {
                    if let Err((line, message)) = merge(entries, &node) {
                        self.fail(line, message);
                    }
                } else if let Some(i) = entries.iter().position(|(e, _)| same_key(e, &k) && e.as_str() != Some("<<")) {
                    // A key written after merged ones replaces what they gave; twice by hand is a mistake.
                    if entries[i].0.line == 0 {
                        entries[i] = (k, node);
                    } else {
                        let (line, first) = (k.line, entries[i].0.line);
                        let name = k.as_str().unwrap_or("?").to_string();
                        self.fail(line, format!("{name:?} is given twice (first on line {first})"));
                    }
                } else {
                    entries.push((k, node));
                }
            }
        }
    }
}

/// Applies a merge key's value (a mapping or a list of them) to `entries`: keys already
/// present win. Merged keys are marked with line 0 so a later explicit key replaces them.
fn merge(entries: &mut Vec<(Node, Node)>, from: &Node) -> Result<(), (usize, String)> {
    let maps: Vec<&Node> = match &from.value {
        Value::Map(_) => vec![from],
        Value::Seq(items) => items.iter().collect(),
        _ => return Err((from.line, "a merge key (<<) takes a mapping or a list of mappings".into())),
    };
    for m in maps {
        let Some(pairs) = m.as_map() else {
            return Err((m.line, "a merge key (<<) takes a mapping or a list of mappings".into()));
        };
        for (k, v) in pairs {
            if !entries.iter().any(|(e, _)| same_key(e, k)) {
                entries.push((Node { line: 0, value: k.value.clone() }, v.clone()));
            }
        }
    }
    Ok(())
}

/// How many nodes `n` holds (itself included), and how many bytes of text.
fn size(n: &Node) -> (usize, usize) {
    let add = |a: (usize, usize), b: (usize, usize)| (a.0 + b.0, a.1 + b.1);
    match &n.value {
        Value::Null => (1, 0),
        Value::Scalar { text, .. } => (1, text.len()),
        Value::Seq(items) => items.iter().map(size).fold((1, 0), add),
        Value::Map(entries) => entries.iter().map(|(k, v)| add(size(k), size(v))).fold((1, 0), add),
    }
}

/// Keys are the same when their text is (`"image"` and `image` are one key).
fn same_key(a: &Node, b: &Node) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(x), Some(y)) => x == y,
        _ => a.value == b.value,
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let line = mark.line();
        let (nodes, bytes) = match &ev {
            Event::Alias(id) => self.anchors.get(id).map_or((1, 0), size),
            Event::Scalar(text, ..) => (1, text.len()),
            _ => (1, 0),
        };
        self.nodes += nodes;
        self.bytes += bytes;
        if self.nodes > MAX_NODES || self.bytes > MAX_BYTES {
            self.fail(
                line,
                format!(
                    "the document expands to more than {MAX_NODES} values or {MAX_BYTES} bytes (aliases of aliases?)"
                ),
            );
            return;
        }
        if matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..)) && self.stack.len() >= MAX_DEPTH {
            self.fail(line, format!("collections nest more than {MAX_DEPTH} deep"));
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                let null = !quoted && tag.is_none() && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                let value = if null { Value::Null } else { Value::Scalar { text, quoted } };
                self.place(Node { line, value }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq { line, anchor, items: Vec::new() }),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map { line, anchor, entries: Vec::new(), key: None })
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq { line, anchor, items }) => self.place(Node { line, value: Value::Seq(items) }, anchor),
                Some(Open::Map { line, anchor, mut entries, .. }) => {
                    for (k, _) in &mut entries {
                        // Merged keys keep the line of the mapping they were merged into.
                        if k.line == 0 {
                            k.line = line;
                        }
                    }
                    self.place(Node { line, value: Value::Map(entries) }, anchor)
                }
                None => self.fail(line, "unbalanced document".into()),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.place(Node { line, ..node }, 0),
                None => self.fail(line, "an alias names no anchor defined before it".into()),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_anchors_and_merge_keys() {
        let doc = parse(
            "x-common: &common\n  restart: always\n  environment:\n    A: '1'\nservices:\n  web:\n    <<: *common\n    restart: \"no\"\n    image: nginx\n",
        )
        .unwrap();
        let web = doc.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("restart").unwrap().as_str(), Some("no"));
        assert_eq!(web.get("image").unwrap().line, 9);
        assert_eq!(web.get("environment").unwrap().get("A").unwrap().as_str(), Some("1"));
        // The merged key is reported on the line of the mapping it went into.
        let keys: Vec<(usize, &str)> =
            web.as_map().unwrap().iter().map(|(k, _)| (k.line, k.as_str().unwrap())).collect();
        assert!(keys.contains(&(7, "environment")), "{keys:?}");
    }

    #[test]
    fn nulls_quotes_duplicates_and_bad_documents() {
        let doc = parse("a:\nb: ~\nc: 'null'\nd: 8080\n").unwrap();
        assert!(doc.get("a").unwrap().is_null() && doc.get("b").unwrap().is_null());
        assert_eq!(doc.get("c").unwrap().value, Value::Scalar { text: "null".into(), quoted: true });
        assert_eq!(doc.get("d").unwrap().as_str(), Some("8080"));
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("twice"), "{e}");
        assert!(parse("a: [1, 2\n").is_err());
        assert!(parse("a: *nowhere\n").is_err());
        assert!(parse("a: &x [1]\nb:\n  <<: 3\n").is_err());
        assert_eq!(parse("").unwrap().value, Value::Null);
        // A billion laughs: each level doubles ten times over.
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            laughs.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&laughs).unwrap_err().message.contains("expands"));
        // Few values, each a long text.
        let mut long = format!("a0: &a0 \"{}\"\n", "x".repeat(1 << 20));
        for i in 1..5 {
            let p = i - 1;
            long.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&long).unwrap_err().message.contains("expands"));
        let deep = format!("a:\n  {}x\n", "- ".repeat(200));
        assert!(parse(&deep).is_err());
    }
}
