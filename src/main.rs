//! The `flowsentry` command line: parses arguments and wires the stages.
use clap::{Parser, Subcommand};

/// flowsentry: passive IoT/OT flow sensor.
#[derive(Debug, Parser)]
#[command(name = "flowsentry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a deterministic, labelled scenario capture.
    Simulate(flowsentry::sim::SimulateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(a) => flowsentry::sim::run(&a)?,
    }
    Ok(())
}
