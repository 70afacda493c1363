//! Scenario simulator: deterministic, labelled IoT/OT traffic written as pcap plus
//! labels, episodes and inventory (see `docs/simulator.md`). Only writes packets.
//!
//! Layout: [`rng`] (seeding), [`pcap_writer`], [`wire`] (frames and checksums), [`tcp`]
//! (connection state machine), [`proto`] (payload encoders), [`net`] and [`site`]
//! (addressing, clock, diurnal profile), [`devices`] and [`attacks`] (traffic streams),
//! [`engine`] (the deterministic merge), [`labels`] (flow cutting for ground truth),
//! [`scenario`] (presets) and [`summary`] (`--summary` statistics).

pub mod attacks;
pub mod devices;
pub mod engine;
pub mod labels;
pub mod net;
pub mod pcap_writer;
pub mod proto;
pub mod rng;
pub mod scenario;
pub mod site;
pub mod summary;
pub mod tcp;
pub mod wire;

use engine::{Pkt, Sink};
use labels::{FlowLabel, Labeller};
use pcap_writer::PcapWriter;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `flowsentry simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Scenario preset name (fixture-benign-camera, ..., training, calibration,
    /// evaluation, bench).
    #[arg(long)]
    pub scenario: String,
    /// Global seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Simulated duration, e.g. `600s`, `10m`, `6h`, `2d` (default: the preset's).
    #[arg(long)]
    pub duration: Option<String>,
    /// Devices per class (training/calibration/evaluation/bench: K, evaluation adds one
    /// unseen device per class; fixtures: count of the fixture's class).
    #[arg(long)]
    pub devices: Option<usize>,
    /// Print per-class statistics (flows per device per day, bytes per flow, periods).
    #[arg(long)]
    pub summary: bool,
    /// Stop after this many packets (bench default 1 000 000).
    #[arg(long)]
    pub packets: Option<u64>,
    /// Camera day bitrate in kbit/s (night = 1/4); the spec's main stream is 2000.
    #[arg(long)]
    pub video_kbps: Option<u32>,
}

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Unknown scenario name.
    #[error("unknown scenario '{name}' (known: {known})")]
    UnknownScenario {
        /// The name given.
        name: String,
        /// The accepted names.
        known: String,
    },
    /// A duration argument could not be parsed.
    #[error("invalid duration '{0}': expected a number with an optional unit s, m, h or d (e.g. 600s, 2d)")]
    BadDuration(String),
    /// Creating, writing or flushing an output file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Serialising a record failed.
    #[error("cannot serialise a record for {path}: {source}")]
    Json {
        /// The file being written.
        path: PathBuf,
        /// The serde error.
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Parses `600`, `600s`, `10m`, `6h`, `2d` into µs.
pub fn parse_duration(s: &str) -> Result<u64, SimError> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| SimError::BadDuration(s.to_string()))?;
    let mult = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(SimError::BadDuration(s.to_string())),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(SimError::BadDuration(s.to_string()));
    }
    Ok((n * mult * 1e6) as u64)
}

struct Writer {
    pcap: PcapWriter<BufWriter<File>>,
    path: PathBuf,
    labels: Labeller,
    spans: BTreeMap<u32, (u64, u64)>,
}

impl Sink for Writer {
    fn packet(&mut self, p: &Pkt) -> Result<(), SimError> {
        self.pcap
            .write(p.ts, &p.frame)
            .map_err(io_err(&self.path))?;
        self.labels.packet(p.ts, &p.frame, p.tag);
        if p.tag.episode != 0 {
            let e = self.spans.entry(p.tag.episode).or_insert((p.ts, p.ts));
            e.0 = e.0.min(p.ts);
            e.1 = e.1.max(p.ts);
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct EpisodeRecord<'a> {
    episode_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    start_us: u64,
    end_us: u64,
    attacker: String,
    victims: &'a [String],
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// Packets written.
    pub packets: u64,
    /// Bytes of the pcap file.
    pub pcap_bytes: u64,
    /// Flow label records.
    pub flows: usize,
    /// Episodes.
    pub episodes: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Generates scenario `args.scenario` into `args.out`; returns the run statistics and,
/// with `--summary`, the summary text.
pub fn generate(args: &SimulateArgs) -> Result<(RunStats, Option<String>), SimError> {
    let began = Instant::now();
    let o = scenario::Overrides {
        duration: args.duration.as_deref().map(parse_duration).transpose()?,
        devices: args.devices,
        video_kbps: args.video_kbps,
        packets: args.packets,
    };
    let plan = scenario::plan(&args.scenario, args.seed, &o)?;
    let (site, mut streams, ctx) = scenario::build(&plan, args.seed);
    std::fs::create_dir_all(&args.out).map_err(io_err(&args.out))?;

    let pcap_path = args.out.join("capture.pcap");
    let f = File::create(&pcap_path).map_err(io_err(&pcap_path))?;
    let pcap = PcapWriter::new(BufWriter::with_capacity(1 << 20, f)).map_err(io_err(&pcap_path))?;
    let mut w = Writer {
        pcap,
        path: pcap_path.clone(),
        labels: Labeller::new(),
        spans: BTreeMap::new(),
    };
    let packets = engine::run(&mut streams.slots, ctx.end, plan.packet_limit, &mut w)?;
    let pcap_bytes = w.pcap.bytes;
    w.pcap.finish().map_err(io_err(&pcap_path))?;
    let flows: Vec<FlowLabel> = w.labels.finish();

    // labels.jsonl
    let lp = args.out.join("labels.jsonl");
    let mut lw = BufWriter::new(File::create(&lp).map_err(io_err(&lp))?);
    for fl in &flows {
        let (id, class) = match site.devices.get(usize::from(fl.tag.device)) {
            Some(d) => (d.host.name.as_str(), d.class.as_str()),
            None => ("", "infrastructure"),
        };
        let line =
            serde_json::to_string(&fl.record(id, class)).map_err(|source| SimError::Json {
                path: lp.clone(),
                source,
            })?;
        writeln!(lw, "{line}").map_err(io_err(&lp))?;
    }
    lw.flush().map_err(io_err(&lp))?;

    // episodes.jsonl
    let ep = args.out.join("episodes.jsonl");
    let mut ew = BufWriter::new(File::create(&ep).map_err(io_err(&ep))?);
    let mut n_episodes = 0;
    for e in &plan.episodes {
        let Some(&(s, t)) = w.spans.get(&e.id) else {
            continue;
        };
        n_episodes += 1;
        let rec = EpisodeRecord {
            episode_id: e.id,
            kind: e.kind.as_str(),
            start_us: s,
            end_us: t,
            attacker: e.attacker.to_string(),
            victims: &e.victims,
        };
        let line = serde_json::to_string(&rec).map_err(|source| SimError::Json {
            path: ep.clone(),
            source,
        })?;
        writeln!(ew, "{line}").map_err(io_err(&ep))?;
    }
    ew.flush().map_err(io_err(&ep))?;

    // inventory.toml
    let ip = args.out.join("inventory.toml");
    let mut inv = format!(
        "# flowsentry inventory for scenario {} (seed {})\n",
        plan.name, args.seed
    );
    for c in site::Class::ALL {
        let devs = site.of(c);
        let n = devs.len();
        for (i, d) in devs.iter().enumerate() {
            let m = d.host.mac;
            inv.push('\n');
            if plan.unseen > 0 && i + plan.unseen >= n {
                inv.push_str("# unseen in training (device-disjoint test)\n");
            }
            inv.push_str(&format!(
                "[[device]]\nname = \"{}\"\nclass = \"{}\"\nmac = \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\nip = \"{}\"\n",
                d.host.name,
                c.as_str(),
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5],
                d.host.ip
            ));
        }
    }
    std::fs::write(&ip, inv).map_err(io_err(&ip))?;

    let seconds = began.elapsed().as_secs_f64();
    let stats = RunStats {
        packets,
        pcap_bytes,
        flows: flows.len(),
        episodes: n_episodes,
        seconds,
    };
    let text = args
        .summary
        .then(|| summary::render(&plan, &site, &streams.slots, &flows, &stats));
    Ok((stats, text))
}

/// Runs `flowsentry simulate`.
pub fn run(args: &SimulateArgs) -> Result<(), SimError> {
    let (stats, text) = generate(args)?;
    if let Some(t) = text {
        print!("{t}");
    }
    eprintln!(
        "simulate {}: {} packets, {} bytes, {} flows, {} episodes in {:.2} s -> {}",
        args.scenario,
        stats.packets,
        stats.pcap_bytes,
        stats.flows,
        stats.episodes,
        stats.seconds,
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600").ok(), Some(600_000_000));
        assert_eq!(parse_duration("10m").ok(), Some(600_000_000));
        assert_eq!(parse_duration("2d").ok(), Some(172_800_000_000));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
