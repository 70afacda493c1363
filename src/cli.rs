//! Command-line definitions (clap derive) and their conversion into checked settings.
//! Flags override the TOML config file.

use clap::{Args, Parser, Subcommand};
use flowsentry::capture::{Backend, Input};
use flowsentry::config::ConfigFile;
use flowsentry::error::ConfigError;
use flowsentry::pipeline::ReplayOptions;
use std::path::PathBuf;

/// flowsentry: passive IoT/OT flow sensor.
#[derive(Debug, Parser)]
#[command(name = "flowsentry", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay pcap/pcapng files (or `-` for stdin) into flow events (JSON Lines).
    Replay(ReplayArgs),
    /// Write a deterministic, labelled scenario capture.
    Simulate(flowsentry::sim::SimulateArgs),
}

/// Flow-table overrides shared by replay and live.
#[derive(Debug, Clone, Args, Default)]
pub struct FlowArgs {
    /// Idle timeout of established TCP flows, seconds [config flow.tcp_idle_secs, default 120].
    #[arg(long, value_name = "SECS")]
    pub tcp_idle: Option<f64>,
    /// Idle timeout of TCP flows never past SYN, seconds [default 10].
    #[arg(long, value_name = "SECS")]
    pub tcp_syn_idle: Option<f64>,
    /// Idle timeout of UDP flows, seconds [default 60].
    #[arg(long, value_name = "SECS")]
    pub udp_idle: Option<f64>,
    /// Idle timeout of ICMP and other flows, seconds [default 30].
    #[arg(long, value_name = "SECS")]
    pub other_idle: Option<f64>,
    /// Active timeout (interim records of long flows), seconds; 0 disables [default 300].
    #[arg(long, value_name = "SECS")]
    pub active_timeout: Option<f64>,
    /// Linger after TCP teardown to collect the final ACK, seconds [default 1].
    #[arg(long, value_name = "SECS")]
    pub tcp_linger: Option<f64>,
    /// Maximum flows held; the least recently active is evicted beyond it [default 1000000].
    #[arg(long, value_name = "N")]
    pub max_flows: Option<usize>,
}

/// `flowsentry replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Capture files, read in order (pcap or pcapng; `-` = stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// BPF filter expression (libpcap syntax).
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Output path for events, `-` for stdout.
    #[arg(long, default_value = "-", value_name = "PATH")]
    pub out: String,
    /// TOML config file (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// File reader: native (pcap-parser, fastest) or libpcap (used anyway with --bpf).
    #[arg(long, value_enum, default_value_t = Backend::Native)]
    pub reader: Backend,
    /// Never show the progress line.
    #[arg(long)]
    pub no_progress: bool,
    /// Flow-table worker threads (0 = everything on one thread). Default: one per core
    /// beyond the capture thread, at least one. Output is identical for any value.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Flow-table overrides.
    #[command(flatten)]
    pub flow: FlowArgs,
}

impl ReplayArgs {
    /// Loads the config (if any), applies flag overrides, validates.
    pub fn to_options(&self) -> Result<ReplayOptions, ConfigError> {
        let mut cfg = match &self.config {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        let f = &mut cfg.flow;
        let a = &self.flow;
        if let Some(v) = a.tcp_idle {
            f.tcp_idle_secs = v;
        }
        if let Some(v) = a.tcp_syn_idle {
            f.tcp_syn_idle_secs = v;
        }
        if let Some(v) = a.udp_idle {
            f.udp_idle_secs = v;
        }
        if let Some(v) = a.other_idle {
            f.other_idle_secs = v;
        }
        if let Some(v) = a.active_timeout {
            f.active_timeout_secs = v;
        }
        if let Some(v) = a.tcp_linger {
            f.tcp_close_linger_secs = v;
        }
        if let Some(v) = a.max_flows {
            f.max_flows = v;
        }
        let flow = cfg.flow.to_flow_config()?;
        let (frag_capacity, frag_timeout) = cfg.fragments.validated()?;
        Ok(ReplayOptions {
            inputs: self.files.iter().map(|s| Input::from_arg(s)).collect(),
            backend: self.reader,
            bpf: self.bpf.clone(),
            flow,
            frag_capacity,
            frag_timeout,
            progress: !self.no_progress,
            workers: self
                .workers
                .unwrap_or_else(flowsentry::pipeline::default_workers),
        })
    }
}
