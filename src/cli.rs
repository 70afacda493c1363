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
    /// Capture live from an interface (SPAN/mirror port) until SIGINT/SIGTERM.
    Live(LiveArgs),
    /// Write a deterministic, labelled scenario capture.
    Simulate(flowsentry::sim::SimulateArgs),
    /// Train a model bundle on benign captures and calibrate its thresholds.
    Train(TrainArgs),
    /// Measure detection on a labelled capture (ROC/PR-AUC, TPR at fixed FPR, episode
    /// recall, false incidents per device per day, time-to-detect) against the global
    /// forest baseline.
    Eval(EvalArgs),
    /// Configuration file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Read events back from a Kafka topic or Redis stream (JSON Lines on stdout).
    Tail(flowsentry::sink::tail::TailArgs),
}

/// `flowsentry train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Benign training captures, in time order.
    #[arg(long = "pcap", required = true, num_args = 1.., value_name = "FILE")]
    pub pcaps: Vec<PathBuf>,
    /// Device inventory of the training site.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Later benign captures for threshold calibration (without them the training
    /// captures are used, which gives optimistic thresholds; a warning says so).
    #[arg(long = "calibrate", num_args = 1.., value_name = "FILE")]
    pub calibrate: Vec<PathBuf>,
    /// Target false-positive rate per class. The forest and the envelope guard get F/2
    /// each (each threshold is the (1 - F/2) quantile of calibration scores), so a flow
    /// is alerted by either at most at rate F (docs/detection.md).
    #[arg(long, default_value_t = 0.001, value_name = "F")]
    pub target_fpr: f64,
    /// Set each threshold so that its true false-positive rate is at most its share of
    /// the target with confidence C (a higher calibration order statistic; default: the
    /// plain quantile).
    #[arg(long, value_name = "C")]
    pub calibration_confidence: Option<f64>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trees per forest.
    #[arg(long, default_value_t = 200)]
    pub trees: usize,
    /// Subsample size per tree.
    #[arg(long, default_value_t = 256)]
    pub max_samples: usize,
    /// Output model file.
    #[arg(long, value_name = "MODEL")]
    pub out: PathBuf,
}

/// `flowsentry eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Labelled captures (the simulator's `capture.pcap`), in time order.
    #[arg(long = "pcap", required = true, num_args = 1.., value_name = "FILE")]
    pub pcaps: Vec<PathBuf>,
    /// Flow labels (the simulator's `labels.jsonl`).
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Attack episodes [default: `episodes.jsonl` beside the labels].
    #[arg(long, value_name = "FILE")]
    pub episodes: Option<PathBuf>,
    /// Device inventory [default: `inventory.toml` beside the labels, when present].
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Model file (default: the model built into the binary).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Modes to run side by side: per-class (inventory classes), inferred (classes
    /// inferred from traffic), global (one pooled forest: the baseline), and the forests
    /// alone without the envelope guard and rules (per-class-forest, global-forest).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["per-class", "inferred", "global", "per-class-forest", "global-forest"])]
    pub modes: Vec<flowsentry::eval::Mode>,
    /// The report as one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Flow-table worker threads for the replay (figures do not depend on it).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// TOML config file (its `[flow]` section; flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Flow-table overrides.
    #[command(flatten)]
    pub flow: FlowArgs,
}

/// The bytes of the model file `path` and its name for messages, or the model built into
/// the binary (empty in a build without `models/default.fsm`).
/// The built-in model is borrowed from the binary, not copied (6.5 MB).
fn model_bytes(
    path: Option<&std::path::Path>,
) -> Result<(std::borrow::Cow<'static, [u8]>, String), String> {
    match path {
        Some(p) => Ok((
            std::fs::read(p)
                .map_err(|e| format!("{}: cannot read model file: {e}", p.display()))?
                .into(),
            p.display().to_string(),
        )),
        None => Ok((
            flowsentry::model::BUILTIN_MODEL.into(),
            "<built-in default model>".to_string(),
        )),
    }
}

impl EvalArgs {
    /// Checked evaluation options.
    pub fn to_options(&self) -> Result<flowsentry::eval::EvalOptions, String> {
        let mut cfg = load(&self.config).map_err(|e| e.to_string())?;
        apply_flow(&mut cfg, &self.flow);
        cfg.validate().map_err(|e| e.to_string())?;
        let flow = cfg.flow.to_flow_config().map_err(|e| e.to_string())?;
        let dir = self
            .labels
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        // Beside the labels: `labels.jsonl` -> `episodes.jsonl`, `inventory.toml` (a
        // simulator output directory); `X.labels.jsonl` -> `X.episodes.jsonl`,
        // `X.inventory.toml` (the committed fixtures).
        let sibling = |what: &str| -> PathBuf {
            let name = self
                .labels
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            match name.strip_suffix("labels.jsonl") {
                Some(prefix) if !prefix.is_empty() => dir.join(format!("{prefix}{what}")),
                _ => dir.join(what),
            }
        };
        let inventory = self.inventory.clone().or_else(|| {
            let p = sibling("inventory.toml");
            p.exists().then_some(p)
        });
        let model = model_bytes(self.model.as_deref())?;
        if self.model.is_none() && model.0.is_empty() {
            return Err("this build has no built-in model; pass --model FILE".into());
        }
        let mut modes = self.modes.clone();
        modes.sort();
        modes.dedup();
        Ok(flowsentry::eval::EvalOptions {
            pcaps: self.pcaps.clone(),
            episodes: self
                .episodes
                .clone()
                .unwrap_or_else(|| sibling("episodes.jsonl")),
            labels: self.labels.clone(),
            inventory,
            model,
            flow,
            modes,
            workers: self
                .workers
                .unwrap_or_else(flowsentry::pipeline::default_workers),
        })
    }
}

/// `flowsentry config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a TOML config file (unknown keys are errors naming the key).
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// `flowsentry live`.
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// Interface to capture on [config capture.interface].
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub iface: Option<String>,
    /// BPF filter expression [config capture.bpf].
    #[arg(long, value_name = "EXPR")]
    pub bpf: Option<String>,
    /// Bytes captured per frame [config capture.snaplen, default 1518].
    #[arg(long, value_name = "N")]
    pub snaplen: Option<i32>,
    /// Kernel ring buffer size in MiB [config capture.buffer_mb, default 64].
    #[arg(long, value_name = "N")]
    pub buffer_mb: Option<i32>,
    /// Promiscuous mode [config capture.promisc].
    #[arg(long)]
    pub promisc: bool,
    /// Capture threads in one PACKET_FANOUT group [config capture.capture_threads, default 1].
    #[arg(long, value_name = "N")]
    pub capture_threads: Option<usize>,
    /// Flow-table workers per capture thread [config pipeline.workers].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Events file, `-` for stdout [config output.path].
    #[arg(long, value_name = "PATH")]
    pub out: Option<String>,
    /// Rotate the events file at this size in MiB [config output.rotate_mb].
    #[arg(long, value_name = "MB")]
    pub out_rotate_mb: Option<u64>,
    /// Rotate the events file at this age in seconds [config output.rotate_secs].
    #[arg(long, value_name = "SECS")]
    pub out_rotate_secs: Option<u64>,
    /// Seconds between `stats` events [config output.stats_interval_secs, default 60].
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<f64>,
    /// Drop root to this user once the capture handle is open [config sensor.user].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// TOML config file (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Flow-table overrides.
    #[command(flatten)]
    pub flow: FlowArgs,
    /// Detection options.
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Event sinks.
    #[command(flatten)]
    pub sinks: SinkArgs,
}

/// Applies flow-table flag overrides to the config.
fn apply_flow(cfg: &mut ConfigFile, a: &FlowArgs) {
    let f = &mut cfg.flow;
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
}

fn load(path: &Option<PathBuf>) -> Result<ConfigFile, ConfigError> {
    match path {
        Some(p) => ConfigFile::load(p),
        None => Ok(ConfigFile::default()),
    }
}

/// The sections of the (already loaded and validated) config file that the event writer
/// needs, the output flags merged in: the file is read once per run.
pub struct WriterConfig {
    /// `output.path` (or `--out`).
    pub path: Option<String>,
    /// `[sensor]`: id and seq file.
    pub sensor: flowsentry::config::SensorSection,
    /// `[sinks]`: settings shared by every sink.
    pub sinks: flowsentry::sink::SinksSection,
    /// `[[sink]]` tables.
    pub sink: Vec<flowsentry::sink::SinkTable>,
}

impl WriterConfig {
    fn of(cfg: &mut ConfigFile) -> WriterConfig {
        WriterConfig {
            path: cfg.output.path.clone(),
            sensor: cfg.sensor.clone(),
            sinks: std::mem::take(&mut cfg.sinks),
            sink: std::mem::take(&mut cfg.sink),
        }
    }
}

/// `flowsentry config check FILE`: what `live` and `replay` would refuse at start, found
/// without opening an interface: the file's keys and values, then the user named by
/// `sensor.user`, the model and inventory files it names, and the BPF filter (compiled
/// for Ethernet, or Linux cooked capture with `capture.interface = "any"`).
pub fn check_config_file(path: &std::path::Path) -> Result<(), String> {
    let cfg = ConfigFile::load(path).map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    let at = path.display();
    if let Some(user) = &cfg.sensor.user {
        flowsentry::privilege::check_user(user).map_err(|e| format!("{at}: sensor.user: {e}"))?;
    }
    if let Some(expr) = &cfg.capture.bpf {
        flowsentry::capture::check_bpf(expr, cfg.capture.interface.as_deref())
            .map_err(|e| format!("{at}: capture.bpf: {e}"))?;
    }
    if let Some(p) = &cfg.detect.inventory {
        flowsentry::device::Inventory::load(p)
            .map_err(|e| format!("{at}: detect.inventory: {e}"))?;
    }
    if let Some(p) = &cfg.detect.model {
        let name = p.display().to_string();
        let bytes = std::fs::read(p)
            .map_err(|e| format!("{at}: detect.model: {name}: cannot read the model file: {e}"))?;
        flowsentry::model::ModelBundle::from_bytes(&bytes, &name)
            .map_err(|e| format!("{at}: detect.model: {e}"))?;
    }
    Ok(())
}

/// Checked settings of `flowsentry live`.
pub struct LiveSettings {
    /// Pipeline options.
    pub run: flowsentry::pipeline::LiveRunOptions,
    /// Rotation of a file output.
    pub rotation: flowsentry::event::Rotation,
    /// Detection options: the flags over the config file's `[detect]`.
    pub detect: DetectArgs,
    /// What the event writer needs of the config file.
    pub writer: WriterConfig,
}

impl LiveArgs {
    /// Loads the config (if any), applies flag overrides, validates.
    pub fn to_settings(&self) -> Result<LiveSettings, ConfigError> {
        let mut cfg = load(&self.config)?;
        apply_flow(&mut cfg, &self.flow);
        let c = &mut cfg.capture;
        if let Some(v) = &self.iface {
            c.interface = Some(v.clone());
        }
        if let Some(v) = &self.bpf {
            c.bpf = Some(v.clone());
        }
        if let Some(v) = self.snaplen {
            c.snaplen = v;
        }
        if let Some(v) = self.buffer_mb {
            c.buffer_mb = v;
        }
        if self.promisc {
            c.promisc = true;
        }
        if let Some(v) = self.capture_threads {
            c.capture_threads = v;
        }
        if let Some(v) = self.workers {
            cfg.pipeline.workers = Some(v);
        }
        let o = &mut cfg.output;
        if let Some(v) = &self.out {
            o.path = Some(v.clone());
        }
        if let Some(v) = self.out_rotate_mb {
            o.rotate_mb = Some(v);
        }
        if let Some(v) = self.out_rotate_secs {
            o.rotate_secs = Some(v);
        }
        if let Some(v) = self.stats_interval {
            o.stats_interval_secs = v;
        }
        if let Some(v) = &self.user {
            cfg.sensor.user = Some(v.clone());
        }
        cfg.validate()?;
        let Some(iface) = cfg.capture.interface.clone() else {
            return Err(ConfigError::Invalid {
                key: "capture.interface",
                value: "(none)".into(),
                reason: "give the interface with -i IFACE or capture.interface",
            });
        };
        let (frag_capacity, frag_timeout) = cfg.fragments.validated()?;
        let c = &cfg.capture;
        Ok(LiveSettings {
            run: flowsentry::pipeline::LiveRunOptions {
                capture: flowsentry::capture::LiveOptions {
                    iface,
                    bpf: c.bpf.clone(),
                    snaplen: c.snaplen,
                    buffer_mb: c.buffer_mb,
                    promisc: c.promisc,
                    timeout_ms: c.timeout_ms,
                    fanout_group: None,
                },
                capture_threads: c.capture_threads,
                workers: cfg
                    .pipeline
                    .workers
                    .unwrap_or_else(|| {
                        (flowsentry::pipeline::default_workers() / c.capture_threads).max(1)
                    })
                    .max(1),
                flow: cfg.flow.to_flow_config()?,
                frag_capacity,
                frag_timeout,
                stats_interval: std::time::Duration::from_secs_f64(cfg.output.stats_interval_secs),
                user: cfg.sensor.user.clone(),
            },
            rotation: flowsentry::event::Rotation {
                max_bytes: cfg.output.rotate_mb.map(|m| m.saturating_mul(1 << 20)),
                max_secs: cfg.output.rotate_secs,
            },
            writer: WriterConfig::of(&mut cfg),
            detect: self.detect.with_config(cfg.detect),
        })
    }
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
    /// Output path for events, `-` for stdout [config output.path, default `-`].
    #[arg(long, value_name = "PATH")]
    pub out: Option<String>,
    /// TOML config file (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// File reader: native (pcap-parser, fastest) or libpcap (both apply --bpf alike)
    /// [config capture.reader, default native].
    #[arg(long, value_enum)]
    pub reader: Option<Backend>,
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
    /// Detection options.
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Event sinks.
    #[command(flatten)]
    pub sinks: SinkArgs,
}

/// Detection options shared by replay and live.
#[derive(Debug, Clone, Args, Default)]
pub struct DetectArgs {
    /// Model file (default: the model built into the binary, trained by `make models`).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Device inventory (TOML: MAC, IP or CIDR -> class and name).
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Flow events only: no scoring, no anomaly/incident events.
    #[arg(long, conflicts_with_all = ["model", "alerts_only", "fail_on"])]
    pub no_detect: bool,
    /// Leave `flow` events out; write only anomaly, incident and stats events.
    #[arg(long)]
    pub alerts_only: bool,
    /// Exit with code 4 (after writing every event and a summary on stderr) when any
    /// event of this kind was produced: for CI pipelines replaying recorded fixtures
    /// (`live`: checked when the sensor stops).
    #[arg(long, value_enum, value_name = "KIND")]
    pub fail_on: Option<FailOn>,
}

/// What makes `--fail-on` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Any anomaly event (forest or rule).
    Anomaly,
    /// Any incident event.
    Incident,
}

/// How a run uses its model ([`DetectArgs::output`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelUse {
    /// A replay: decoded on a helper thread while the run starts; never reloaded.
    Replay,
    /// A live run: decoded before capture starts; reloaded on SIGHUP if the file changed.
    Live,
}

impl DetectArgs {
    /// These flags over the `[detect]` section `d` of the config file (already
    /// validated): a flag wins; a flag that turns detection on overrides the file's
    /// `no_detect`.
    fn with_config(&self, d: flowsentry::config::DetectSection) -> DetectArgs {
        let fail_on = match (self.fail_on, d.fail_on.as_deref()) {
            (Some(f), _) => Some(f),
            (None, Some("incident")) => Some(FailOn::Incident),
            (None, Some(_)) => Some(FailOn::Anomaly),
            (None, None) => None,
        };
        let cli_enables = self.model.is_some() || self.alerts_only || self.fail_on.is_some();
        DetectArgs {
            model: self.model.clone().or(d.model),
            inventory: self.inventory.clone().or(d.inventory),
            no_detect: self.no_detect || (d.no_detect && !cli_enables),
            alerts_only: self.alerts_only || d.alerts_only,
            fail_on,
        }
    }

    /// Builds the output stage: the detector (unless `--no-detect`) around `writer`. The
    /// model file is read and the inventory loaded here (their errors are returned). For a
    /// [`ModelUse::Replay`] the model is decoded and checked on another thread while the
    /// run starts ([`flowsentry::output::Output::set_pending_observer`]: a model that
    /// fails there ends the run with `OutputError::Model` before any event is written);
    /// for a [`ModelUse::Live`] it is decoded here, and a `--model` file's digest is kept
    /// for SIGHUP reloads.
    pub fn output(
        &self,
        writer: flowsentry::event::EventWriter,
        flow: &flowsentry::flow::FlowConfig,
        model_use: ModelUse,
    ) -> Result<flowsentry::output::Output, String> {
        let mut out = flowsentry::output::Output::flows_only(writer);
        out.emit_flows = !self.alerts_only;
        if self.no_detect {
            return Ok(out);
        }
        let (bytes, name) = model_bytes(self.model.as_deref())?;
        if bytes.is_empty() && self.model.is_none() {
            // A build without models/default.fsm (e.g. before `make models`): flows only.
            // An empty `--model` file is refused by the loader like any other bad file.
            eprintln!("flowsentry: note: this build has no built-in model (models/default.fsm was absent when building); detection is off; pass --model FILE to enable it");
            return Ok(out);
        }
        let inventory = match &self.inventory {
            Some(p) => flowsentry::device::Inventory::load(p).map_err(|e| e.to_string())?,
            None => flowsentry::device::Inventory::default(),
        };
        let id = flowsentry::model::ModelBundle::id_of(&bytes);
        if model_use == ModelUse::Live {
            // Only a live run reloads; a replay does not hash the file for it.
            out.model_source = self
                .model
                .as_ref()
                .map(|p| flowsentry::output::ModelSource {
                    path: p.clone(),
                    id: id.clone(),
                    digest: flowsentry::model::ModelBundle::file_digest(&bytes),
                });
        }
        let cfg = flowsentry::detect::DetectorConfig {
            max_record_lag: Some(flow.max_record_lag()),
            ..Default::default()
        };
        let build = move || -> Result<Box<dyn flowsentry::output::FlowObserver>, String> {
            let bundle = flowsentry::model::ModelBundle::from_bytes(&bytes, &name)
                .map_err(|e| e.to_string())?;
            let det =
                flowsentry::detect::Detector::new(std::sync::Arc::new(bundle), id, inventory, cfg);
            Ok(Box::new(det))
        };
        if model_use == ModelUse::Replay {
            let pending = std::thread::Builder::new()
                .name("model-load".into())
                .spawn(build)
                .map_err(|e| format!("cannot start the model loading thread: {e}"))?;
            out.set_pending_observer(pending);
        } else {
            out.observer = Some(build()?);
        }
        Ok(out)
    }
}

impl ReplayArgs {
    /// Loads the config (if any), applies flag overrides, validates. Returns the options,
    /// the detection options (the flags over the file's `[detect]`) and what the event
    /// writer needs of the file.
    pub fn to_options(&self) -> Result<(ReplayOptions, DetectArgs, WriterConfig), ConfigError> {
        let mut cfg = load(&self.config)?;
        apply_flow(&mut cfg, &self.flow);
        if let Some(b) = &self.bpf {
            cfg.capture.bpf = Some(b.clone());
        }
        if let Some(w) = self.workers {
            cfg.pipeline.workers = Some(w);
        }
        if let Some(o) = &self.out {
            cfg.output.path = Some(o.clone());
        }
        cfg.validate()?;
        let backend = match self.reader {
            Some(b) => b,
            None if cfg.capture.reader == "libpcap" => Backend::Libpcap,
            None => Backend::Native,
        };
        let flow = cfg.flow.to_flow_config()?;
        let (frag_capacity, frag_timeout) = cfg.fragments.validated()?;
        let writer = WriterConfig::of(&mut cfg);
        Ok((
            ReplayOptions {
                inputs: self.files.iter().map(|s| Input::from_arg(s)).collect(),
                backend,
                bpf: cfg.capture.bpf.clone(),
                flow,
                frag_capacity,
                frag_timeout,
                progress: !self.no_progress,
                workers: cfg
                    .pipeline
                    .workers
                    .unwrap_or_else(flowsentry::pipeline::default_workers),
            },
            self.detect.with_config(cfg.detect),
            writer,
        ))
    }
}

/// Event sink options shared by replay and live.
#[derive(Debug, Clone, Args, Default)]
pub struct SinkArgs {
    /// Also send every event to this sink (repeatable): file:PATH, kafka://HOST:PORT/TOPIC,
    /// redis://HOST:PORT/STREAM, syslog+tcp://HOST:PORT, syslog+udp://HOST:PORT; options
    /// as URL query (docs/sinks.md) [config [[sink]] url; these flags replace that list].
    /// With a sink and no --out, nothing goes to stdout.
    #[arg(long = "sink", value_name = "URL")]
    pub sinks: Vec<String>,
    /// The sensor_id stamped on every event [config sensor.id, default the host name].
    #[arg(long, value_name = "ID")]
    pub sensor_id: Option<String>,
    /// Keep the last seq in this file so seq continues across runs [config sensor.seq_file;
    /// default: replay starts at 1, live uses <spill dir>/<sensor id>.seq].
    #[arg(long, value_name = "FILE")]
    pub seq_file: Option<PathBuf>,
    /// Directory for the sinks' spill subdirectories [config sinks.spill_dir, default
    /// <temp dir>/flowsentry-spill].
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Spill cap per sink in bytes; beyond it events are dropped and counted
    /// [config sinks.spill_max_bytes, default 1073741824].
    #[arg(long, value_name = "BYTES")]
    pub spill_max_bytes: Option<u64>,
    /// Events held in memory per sink before spilling [config sinks.queue_events, default 16384].
    #[arg(long, value_name = "N")]
    pub sink_queue: Option<usize>,
    /// Seconds to wait at the end of a run for the sinks to deliver; the rest stays in the
    /// spill directory [config sinks.drain_secs, default 10].
    #[arg(long, value_name = "SECS")]
    pub sink_drain_secs: Option<f64>,
}

impl SinkArgs {
    /// Builds the event writer from these flags over `cfg`: the primary output (`--out` /
    /// `output.path`; none when sinks are configured and no output was asked for), the
    /// sensor id and every sink. `rotation` is given for the live sensor (append, rotate).
    /// Errors carry the exit code.
    pub fn writer(
        &self,
        mut cfg: WriterConfig,
        rotation: Option<flowsentry::event::Rotation>,
    ) -> Result<flowsentry::event::EventWriter, (u8, String)> {
        use flowsentry::event::EventWriter;
        let usage = |e: String| (2u8, e);
        if !self.sinks.is_empty() {
            cfg.sink = self
                .sinks
                .iter()
                .map(|u| flowsentry::sink::SinkTable {
                    url: u.clone(),
                    ..Default::default()
                })
                .collect();
        }
        let s = &mut cfg.sinks;
        if let Some(v) = &self.spill_dir {
            s.spill_dir = Some(v.clone());
        }
        if let Some(v) = self.spill_max_bytes {
            s.spill_max_bytes = v;
        }
        if let Some(v) = self.sink_queue {
            s.queue_events = v;
        }
        if let Some(v) = self.sink_drain_secs {
            s.drain_secs = v;
        }
        let sensor_id = self
            .sensor_id
            .clone()
            .or_else(|| cfg.sensor.id.clone())
            .unwrap_or_else(flowsentry::sink::default_sensor_id);
        flowsentry::sink::check_sensor_id(&sensor_id).map_err(|e| usage(e.to_string()))?;
        let settings = flowsentry::sink::SinkSettings::new(sensor_id, &cfg.sinks, &cfg.sink)
            .map_err(|e| usage(e.to_string()))?;
        let mut w = match (cfg.path, settings.specs.is_empty(), rotation) {
            (None, false, _) => Ok(EventWriter::sinks_only()),
            (p, _, Some(rot)) if p.as_deref().is_some_and(|p| p != "-") => {
                EventWriter::open_rotating(std::path::Path::new(p.as_deref().unwrap_or("-")), rot)
            }
            (p, _, _) => EventWriter::open(p.as_deref().unwrap_or("-")),
        }
        .map_err(|e| (1, e.to_string()))?;
        w.set_sensor_id(&settings.sensor_id);
        w.set_drain(settings.drain);
        let seq_file = self
            .seq_file
            .clone()
            .or_else(|| cfg.sensor.seq_file.clone())
            .or_else(|| {
                // The live sensor keeps seq across restarts by default.
                rotation.map(|_| {
                    settings.spill_dir.join(format!(
                        "{}.seq",
                        flowsentry::sink::file_safe(&settings.sensor_id)
                    ))
                })
            });
        if let Some(p) = seq_file {
            w.set_seq_file(&p).map_err(|e| (1, e.to_string()))?;
        }
        for sink in settings.open().map_err(|e| (1, e.to_string()))? {
            w.add_sink(sink);
        }
        Ok(w)
    }
}

/// Prints each sink's final counters on stderr; returns true when events were dropped.
pub fn report_sinks(prog: &str, stats: &[flowsentry::sink::SinkStats]) -> bool {
    let mut lost = false;
    for s in stats {
        eprintln!("{prog}: {}", s.summary());
        lost |= s.dropped_total > 0;
    }
    lost
}
