//! Human output: Docker-style tables; the sizes and ages are the library's (report::text).

pub use lifeboat::report::text::{ago, human_size, truncate};

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

/// Prints rows as columns separated by at least three spaces, as Docker does.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
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
