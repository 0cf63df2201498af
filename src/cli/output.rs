//! Human output: Docker-style tables; the sizes and ages are the library's (report::text).

pub use lifeboat::report::text::{ago, human_size, truncate};

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Standard output was closed by its reader (`ps --format json | head`): what is left to print
/// is dropped, and the command finishes its work, as a closed pipe is a normal end of output.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether standard output's reader has gone (streams such as `stats` and `logs -f` stop).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn write_to(mut out: impl std::io::Write, closed: &AtomicBool, args: std::fmt::Arguments<'_>, newline: bool) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let written = out.write_fmt(args).and_then(|()| if newline { out.write_all(b"\n") } else { Ok(()) });
    if written.and_then(|()| out.flush()).is_err() {
        // A closed pipe, or a full disk behind a redirection: nothing more can be said there.
        closed.store(true, Ordering::Relaxed);
    }
}

/// `println!` for the command line: never panics on a closed or failing standard output.
pub fn out_line(args: std::fmt::Arguments<'_>, newline: bool) {
    write_to(std::io::stdout().lock(), &STDOUT_CLOSED, args, newline);
}

/// `eprintln!` for the command line: never panics on a closed standard error.
pub fn err_line(args: std::fmt::Arguments<'_>, newline: bool) {
    write_to(std::io::stderr().lock(), &STDERR_CLOSED, args, newline);
}

/// Writes bytes to standard output (container logs, archives' progress), marking it closed
/// when its reader has gone; false once it is.
pub fn out_bytes(bytes: &[u8]) -> bool {
    if stdout_closed() {
        return false;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(bytes).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// What a Docker-style `--format` asks for: the table, JSON, or a Go-style template.
pub enum Shape {
    Table,
    Json,
    Template(super::template::Template),
}

impl Shape {
    pub fn parse(format: Option<&str>) -> Result<Shape, super::UsageError> {
        Ok(match format.map(str::trim) {
            None | Some("" | "table") => Shape::Table,
            Some("json") => Shape::Json,
            Some(t) => Shape::Template(super::template::Template::parse(t)?),
        })
    }

    /// Prints `rows` through the template (a header line first for `table …`, named by
    /// `headers` where Docker names a column otherwise than its field).
    pub fn print_template<T: serde::Serialize>(
        t: &super::template::Template,
        rows: &[T],
        headers: &dyn Fn(&str) -> Option<&'static str>,
    ) -> anyhow::Result<()> {
        let mut lines = Vec::new();
        if t.is_table() {
            lines.push(t.header(headers));
        }
        for r in rows {
            lines.push(t.render(&serde_json::to_value(r)?)?);
        }
        if t.is_table() {
            // Columns aligned as the table is: cells split at tabs.
            let cells: Vec<Vec<String>> = lines.iter().map(|l| l.split('\t').map(str::to_string).collect()).collect();
            print_table(&cells[0].iter().map(String::as_str).collect::<Vec<_>>(), &cells[1..]);
        } else {
            for l in lines {
                println!("{l}");
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
    /// The versioned report the agent reads from its job steps (report::JobReport).
    #[value(hide = true)]
    Job,
}

impl OutputFormat {
    /// Anything but a table: no progress on the terminal.
    pub fn machine(self) -> bool {
        self != OutputFormat::Table
    }
}

/// Text that came from a container or a snapshot (a file name, a service's status, a label)
/// as it may be shown on a terminal: control characters (escape sequences, new lines) are
/// written out as `\u{1b}`, never sent, so a name cannot rewrite the screen or forge a line.
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect(),
    )
}

/// Prints rows as columns separated by at least three spaces, as Docker does; what the cells
/// hold is [`shown`].
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| shown(c).into_owned()).collect()).collect();
    // A row may have more cells than the header (a template's text holding tabs).
    let columns = rows.iter().map(Vec::len).chain([headers.len()]).max().unwrap_or(0);
    let mut widths: Vec<usize> = vec![0; columns];
    for row in rows.iter().map(|r| r.iter().map(String::as_str).collect::<Vec<_>>()).chain([headers.to_vec()]) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A report as pretty JSON with its keys in alphabetical order, the order every JSON
/// object the command line printed has had (scripts may compare the text).
pub fn sorted_json(v: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::to_value(v)?)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_never_sent() {
        assert_eq!(super::shown("plain name.html"), "plain name.html");
        assert_eq!(super::shown("ünïcode ok"), "ünïcode ok");
        assert_eq!(super::shown("evil\u{1b}[2J\nforged line"), "evil\\u{1b}[2J\\nforged line");
        assert_eq!(super::shown("tab\there"), "tab\\there");
    }
}
