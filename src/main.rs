//! The `flowsentry` binary: parses the command line, wires the stages, maps outcomes to
//! exit codes. All logic lives in the library.
//!
//! Exit codes: 0 success (also when the reader of stdout went away); 1 runtime error
//! (e.g. output unwritable); 2 invalid command line or config; 3 an input could not be read
//! completely (every event for what was read is still written).

mod cli;

use clap::Parser;
use cli::{Cli, Command, ConfigCommand};
use flowsentry::error::OutputError;
use flowsentry::event::EventWriter;
use flowsentry::output::Output;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

/// Exit code: an input was missing, unreadable, truncated or corrupt.
const EXIT_INPUT: u8 = 3;
/// Exit code: bad command line or config.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(a) => replay(&a),
        Command::Live(a) => live(&a),
        Command::Simulate(a) => match flowsentry::sim::run(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("flowsentry simulate: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Config(ConfigCommand::Check { file }) => {
            match flowsentry::config::ConfigFile::load(&file).and_then(|c| c.validate()) {
                Ok(()) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("flowsentry config check: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
    }
}

fn replay(a: &cli::ReplayArgs) -> ExitCode {
    let (opts, out) = match a.to_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flowsentry replay: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut writer = match EventWriter::open(&out) {
        Ok(w) => Output::flows_only(w),
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

fn live(a: &cli::LiveArgs) -> ExitCode {
    let s = match a.to_settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flowsentry live: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let control = flowsentry::pipeline::Control::default();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, control.stop.clone()) {
            eprintln!("flowsentry live: cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, control.reopen.clone())
    {
        eprintln!("flowsentry live: cannot install signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let sources = match flowsentry::pipeline::open_live(&s.run) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("flowsentry live: {e}");
            return ExitCode::FAILURE;
        }
    };
    let writer = if s.out == "-" {
        EventWriter::open("-")
    } else {
        EventWriter::open_rotating(std::path::Path::new(&s.out), s.rotation)
    };
    let mut writer = match writer {
        Ok(w) => Output::flows_only(w),
        Err(e) => {
            eprintln!("flowsentry live: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(user) = &s.run.user {
        if let Err(e) = flowsentry::privilege::drop_to(user) {
            eprintln!("flowsentry live: {e}");
            return ExitCode::FAILURE;
        }
    }
    match flowsentry::pipeline::live(&s.run, sources, &mut writer, &control) {
        Ok(o) => {
            for e in &o.capture_errors {
                eprintln!("flowsentry live: {e}");
            }
            eprintln!(
                "flowsentry live: stopped: {} frames, {} flow events, {} dropped (queue full), {} dropped by the kernel",
                o.frames, o.flow_events, o.queue_full, o.pcap_dropped
            );
            if o.capture_errors.is_empty() || control.stop.load(Ordering::Relaxed) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(OutputError::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flowsentry live: {e}");
            ExitCode::FAILURE
        }
    }
}
