//! The `flowsentry` binary: parses the command line, wires the stages, maps outcomes to
//! exit codes. All logic lives in the library.
//!
//! Exit codes: 0 success (also when the reader of stdout went away); 1 runtime error
//! (e.g. output unwritable); 2 invalid command line or config; 3 an input could not be read
//! completely (every event for what was read is still written); 4 `--fail-on` matched
//! (anomaly or incident events were produced; all events were written); 5 a sink dropped
//! events (its spill cap was reached or its spill could not be written; counted in `stats`).

mod cli;

use clap::Parser;
use cli::{Cli, Command, ConfigCommand};
use flowsentry::error::OutputError;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

/// Exit code: an input was missing, unreadable, truncated or corrupt.
const EXIT_INPUT: u8 = 3;
/// Exit code: bad command line or config.
const EXIT_USAGE: u8 = 2;
/// Exit code: `--fail-on` matched (anomaly or incident events were produced).
const EXIT_ALERTS: u8 = 4;
/// Exit code: a sink dropped events (spill cap reached or spill unwritable).
const EXIT_SINK_LOSS: u8 = 5;

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
        Command::Train(a) => train(&a),
        Command::Eval(a) => eval(&a),
        Command::Tail(a) => tail(&a),
        Command::Config(ConfigCommand::Check { file }) => match cli::check_config_file(&file) {
            Ok(()) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flowsentry config check: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

fn replay(a: &cli::ReplayArgs) -> ExitCode {
    let (opts, detect, writer_cfg) = match a.to_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flowsentry replay: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let writer = match a.sinks.writer(writer_cfg, None) {
        Ok(w) => w,
        Err((code, e)) => {
            eprintln!("flowsentry replay: {e}");
            return ExitCode::from(code);
        }
    };
    // The model is decoded while the replay starts reading.
    let mut writer = match detect.output(writer, &opts.flow, cli::ModelUse::Replay) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flowsentry replay: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = flowsentry::pipeline::replay(&opts, &mut writer);
    let sink_loss = cli::report_sinks("flowsentry replay", &writer.writer.sink_stats());
    match result {
        Ok(outcome) => {
            for w in &outcome.input_warnings {
                eprintln!("flowsentry replay: warning: {w}");
            }
            for e in &outcome.input_errors {
                eprintln!("flowsentry replay: {e}");
            }
            if sink_loss {
                return ExitCode::from(EXIT_SINK_LOSS);
            }
            if !outcome.input_errors.is_empty() {
                return ExitCode::from(EXIT_INPUT);
            }
            if fail_on_hit(detect.fail_on, &writer) {
                return ExitCode::from(EXIT_ALERTS);
            }
            ExitCode::SUCCESS
        }
        Err(OutputError::BrokenPipe) => ExitCode::SUCCESS,
        Err(OutputError::Model(e)) => {
            // A bad model file, found while the replay started: nothing was written.
            eprintln!("flowsentry replay: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("flowsentry replay: {e}");
            if let Err(e) = writer.writer.record_last_seq() {
                eprintln!("flowsentry replay: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// With `--fail-on`: prints the detector's human summary on stderr and says whether an
/// event of that kind was written (the run then exits with `EXIT_ALERTS`).
fn fail_on_hit(fail_on: Option<cli::FailOn>, out: &flowsentry::output::Output) -> bool {
    let (Some(kind), Some(obs)) = (fail_on, out.observer.as_ref()) else {
        return false;
    };
    let (anomalies, incidents) = obs.alert_counts();
    eprint!("{}", obs.human_summary());
    match kind {
        cli::FailOn::Anomaly => anomalies > 0,
        cli::FailOn::Incident => incidents > 0,
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
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let writer = match a.sinks.writer(s.writer, Some(s.rotation)) {
        Ok(w) => w,
        Err((code, e)) => {
            eprintln!("flowsentry live: {e}");
            return ExitCode::from(code);
        }
    };
    let mut writer = match s.detect.output(writer, &s.run.flow, cli::ModelUse::Live) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flowsentry live: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(user) = &s.run.user {
        let state = writer.writer.state_paths();
        if let Err(e) = flowsentry::privilege::give_to(user, &state)
            .and_then(|()| flowsentry::privilege::drop_to(user))
        {
            eprintln!("flowsentry live: {e}");
            // A user that does not exist is a bad option; a failing system call is not.
            return match e {
                flowsentry::privilege::PrivilegeError::NoUser(_) => ExitCode::from(EXIT_USAGE),
                flowsentry::privilege::PrivilegeError::Sys { .. } => ExitCode::FAILURE,
            };
        }
    }
    let result = flowsentry::pipeline::live(&s.run, sources, &mut writer, &control);
    let sink_loss = cli::report_sinks("flowsentry live", &writer.writer.sink_stats());
    match result {
        Ok(o) => {
            for e in &o.capture_errors {
                eprintln!("flowsentry live: {e}");
            }
            eprintln!(
                "flowsentry live: stopped: {} frames, {} flow events, {} dropped (queue full), {} dropped by the kernel",
                o.frames, o.flow_events, o.queue_full, o.pcap_dropped
            );
            if sink_loss {
                return ExitCode::from(EXIT_SINK_LOSS);
            }
            if !o.capture_errors.is_empty() && !control.stop.load(Ordering::Relaxed) {
                return ExitCode::from(EXIT_INPUT);
            }
            if fail_on_hit(s.detect.fail_on, &writer) {
                return ExitCode::from(EXIT_ALERTS);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let OutputError::BrokenPipe = e {
                // Unlike replay, a sensor whose reader went away has lost events.
                eprintln!(
                    "flowsentry live: the output's reader closed the pipe; capture stopped \
                     and the flows still open were not written"
                );
            } else {
                eprintln!("flowsentry live: {e}");
            }
            if let Err(e) = writer.writer.record_last_seq() {
                eprintln!("flowsentry live: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn eval(a: &cli::EvalArgs) -> ExitCode {
    let opts = match a.to_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flowsentry eval: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match flowsentry::eval::evaluate(&opts) {
        Ok(report) => {
            if a.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("flowsentry eval: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", flowsentry::eval::render(&report));
            }
            ExitCode::SUCCESS
        }
        Err(
            e @ (flowsentry::eval::EvalError::Input(_)
            | flowsentry::eval::EvalError::Read { .. }
            | flowsentry::eval::EvalError::Parse { .. }),
        ) => {
            eprintln!("flowsentry eval: {e}");
            ExitCode::from(EXIT_INPUT)
        }
        Err(e @ flowsentry::eval::EvalError::Setup(_)) => {
            // The model or the inventory is unusable: exit 2, as `replay` does.
            eprintln!("flowsentry eval: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("flowsentry eval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tail(a: &flowsentry::sink::tail::TailArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match flowsentry::sink::tail::run(a, &mut out) {
        Ok(_) => ExitCode::SUCCESS,
        Err(flowsentry::sink::tail::TailError::Stdout(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flowsentry tail: {e}");
            ExitCode::FAILURE
        }
    }
}

fn train(a: &cli::TrainArgs) -> ExitCode {
    if !(a.target_fpr > 0.0 && a.target_fpr < 1.0) {
        eprintln!(
            "flowsentry train: --target-fpr must be in (0, 1), got {}",
            a.target_fpr
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if let Some(c) = a.calibration_confidence.filter(|c| !(*c > 0.0 && *c < 1.0)) {
        eprintln!("flowsentry train: --calibration-confidence must be in (0, 1), got {c}");
        return ExitCode::from(EXIT_USAGE);
    }
    if a.calibrate.is_empty() {
        eprintln!("flowsentry train: warning: no --calibrate captures; the thresholds are calibrated on the training captures, whose scores are lower than on unseen traffic, so the real false-positive rate will be above --target-fpr");
    }
    let opts = flowsentry::train::TrainOptions {
        pcaps: a.pcaps.clone(),
        calibrate: a.calibrate.clone(),
        inventory: a.inventory.clone(),
        target_fpr: a.target_fpr,
        calibration_confidence: a.calibration_confidence,
        seed: a.seed,
        n_trees: a.trees,
        max_samples: a.max_samples,
        flow: flowsentry::flow::FlowConfig::default(),
    };
    let (bundle, report) = match flowsentry::train::train(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flowsentry train: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = bundle.save(&a.out) {
        eprintln!("flowsentry train: {e}");
        return ExitCode::FAILURE;
    }
    let id = std::fs::read(&a.out)
        .map(|b| flowsentry::model::ModelBundle::id_of(&b))
        .unwrap_or_default();
    println!("model {} written to {}", id, a.out.display());
    match a.calibration_confidence {
        Some(c) => println!(
            "thresholds: each forest's and guard's true FPR at most {} with confidence {c}",
            a.target_fpr / 2.0
        ),
        None => println!(
            "thresholds: (1 - {}) quantile of each forest's and guard's calibration scores",
            a.target_fpr / 2.0
        ),
    }
    println!(
        "{:<16} {:>10} {:>12} {:>10} {:>16} {:>10} {:>16}",
        "class",
        "train rows",
        "calib rows",
        "threshold",
        "forest calib FPR",
        "envelope",
        "either calib FPR"
    );
    for r in &report {
        let name = match (r.class, r.transport) {
            (flowsentry::device::DeviceClass::Unknown, _) => "pooled".to_string(),
            (c, None) => c.as_str().to_string(),
            // A per-transport forest: its own threshold; the class line's envelope and
            // union FPR cover it.
            (c, Some(t)) => format!("  {}/{}", c.as_str(), t.as_str()),
        };
        let line = format!(
            "{:<16} {:>10} {:>12} {:>10.4} {:>15.3}%",
            name,
            r.n_train,
            r.n_calibration,
            r.threshold,
            r.calibration_fpr * 100.0
        );
        match r.guard {
            Some(g) => println!(
                "{line} {:>10.4} {:>15.3}%",
                g.threshold,
                g.union_fpr * 100.0
            ),
            None => println!("{line}"),
        }
    }
    println!(
        "inference model: {}; modbus write masters: {}",
        if bundle.inference.is_some() {
            "trained"
        } else {
            "none (fewer than two classes)"
        },
        bundle.modbus_write_masters.len()
    );
    ExitCode::SUCCESS
}
