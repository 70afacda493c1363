//! The `flowsentry` binary: parses the command line, wires the stages, maps outcomes to
//! exit codes. All logic lives in the library.
//!
//! Exit codes: 0 success (also when the reader of stdout went away); 1 runtime error
//! (e.g. output unwritable); 2 invalid command line or config; 3 an input could not be read
//! completely (every event for what was read is still written).

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use flowsentry::error::OutputError;
use flowsentry::event::EventWriter;
use std::process::ExitCode;

/// Exit code: an input was missing, unreadable, truncated or corrupt.
const EXIT_INPUT: u8 = 3;
/// Exit code: bad command line or config.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(a) => replay(&a),
        Command::Simulate(a) => match flowsentry::sim::run(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flowsentry simulate: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn replay(a: &cli::ReplayArgs) -> ExitCode {
    let opts = match a.to_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flowsentry replay: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut writer = match EventWriter::open(&a.out) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("flowsentry replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    match flowsentry::pipeline::replay(&opts, &mut writer) {
        Ok(outcome) => {
            for e in &outcome.input_errors {
                eprintln!("flowsentry replay: {e}");
            }
            if outcome.input_errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INPUT)
            }
        }
        Err(OutputError::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowsentry replay: {e}");
            ExitCode::FAILURE
        }
    }
}
