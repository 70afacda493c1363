//! Scenario simulator: deterministic, labelled IoT/OT traffic written as pcap plus
//! labels, episodes and inventory (see `docs/simulator.md`). Only writes packets.

use std::path::PathBuf;

/// Arguments of `flowsentry simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Scenario preset name (e.g. fixture-benign-camera, training, evaluation, bench).
    #[arg(long)]
    pub scenario: String,
    /// Global seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Unknown scenario name.
    #[error("unknown scenario '{0}'")]
    UnknownScenario(String),
}

/// Runs `flowsentry simulate`.
pub fn run(args: &SimulateArgs) -> Result<(), SimError> {
    Err(SimError::UnknownScenario(args.scenario.clone()))
}
