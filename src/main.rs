//! The `lifeboat` binary: parse, set up logging, run, map the outcome to an exit code.

mod cli;

use clap::Parser;

fn main() {
    if let Some(code) =
        cli::shim_entry().or_else(cli::hook_entry).or_else(cli::thaw_guard_entry).or_else(cli::hydrator_entry)
    {
        std::process::exit(code);
    }
    // Called by a shell's completion script: offer completions and end.
    clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command)
        .var(cli::complete::VAR)
        .complete();
    let cli = cli::Cli::parse();
    cli.init_logging();
    let code = match cli.run() {
        Ok(code) => code,
        Err(err) => cli::fail(&err),
    };
    std::process::exit(code);
}
