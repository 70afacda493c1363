//! Configuration: the TOML file tree (`deny_unknown_fields`, documented defaults) and
//! its conversion into the runtime settings of each stage. Command-line flags override
//! the file (the CLI layer applies them after loading).

use crate::error::ConfigError;
use crate::flow::FlowConfig;
use crate::time::Nanos;
use serde::Deserialize;
use std::path::Path;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Flow-table settings.
    #[serde(default)]
    pub flow: FlowSection,
    /// Fragment-table settings.
    #[serde(default)]
    pub fragments: FragmentSection,
    /// Capture settings (live interface, BPF, file reader).
    #[serde(default)]
    pub capture: CaptureSection,
    /// Threading.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// Event output.
    #[serde(default)]
    pub output: OutputSection,
    /// Process settings.
    #[serde(default)]
    pub sensor: SensorSection,
    /// Settings shared by every sink.
    #[serde(default)]
    pub sinks: crate::sink::SinksSection,
    /// Event sinks besides `output.path` (`[[sink]]` tables; `--sink` flags replace them).
    #[serde(default)]
    pub sink: Vec<crate::sink::SinkTable>,
    /// Detection (model, inventory, which events).
    #[serde(default)]
    pub detect: DetectSection,
}

/// `[detect]`: the detector. Every key has a command-line flag of the same meaning
/// (`--model`, `--inventory`, `--no-detect`, `--alerts-only`, `--fail-on`); a flag wins,
/// and a flag that enables detection (`--model`, `--alerts-only`, `--fail-on`) overrides
/// `no_detect = true` in the file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    /// Model file. Default: the model built into the binary.
    pub model: Option<std::path::PathBuf>,
    /// Device inventory file (TOML).
    pub inventory: Option<std::path::PathBuf>,
    /// Flow events only: no scoring.
    pub no_detect: bool,
    /// Leave `flow` events out.
    pub alerts_only: bool,
    /// `"anomaly"` or `"incident"`: exit with code 4 when such an event was produced
    /// (replay at the end, live when the sensor stops).
    pub fail_on: Option<String>,
}

/// `[capture]`: where frames come from. Every key has a command-line flag of the same
/// meaning (`--bpf`, `-i`, `--snaplen`, `--buffer-mb`, `--promisc`, `--capture-threads`,
/// `--reader`); the flag wins.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Live interface name (`live -i`).
    pub interface: Option<String>,
    /// BPF filter expression.
    pub bpf: Option<String>,
    /// Bytes captured per frame. Default 1518.
    pub snaplen: i32,
    /// Kernel ring buffer in MiB. Default 64.
    pub buffer_mb: i32,
    /// Promiscuous mode. Default false.
    pub promisc: bool,
    /// Capture threads joined in one PACKET_FANOUT group. Default 1.
    pub capture_threads: usize,
    /// libpcap read timeout in ms (how often a quiet link returns; also how long a frame
    /// can wait in a part-filled kernel ring block). Default 10.
    pub timeout_ms: i32,
    /// File reader: "native" or "libpcap". Default "native".
    pub reader: String,
}

impl Default for CaptureSection {
    fn default() -> Self {
        CaptureSection {
            interface: None,
            bpf: None,
            snaplen: 1518,
            buffer_mb: 64,
            promisc: false,
            capture_threads: 1,
            timeout_ms: 10,
            reader: "native".into(),
        }
    }
}

/// `[pipeline]`: threads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Flow-table workers (per capture thread when live); default one per core beyond the
    /// capture thread. 0 = single-threaded replay.
    pub workers: Option<usize>,
}

/// `[output]`: where events go.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Path of the events file, `-` for stdout. Default `-`, or no primary output when
    /// sinks are configured.
    pub path: Option<String>,
    /// Rotate the file at this size (MiB).
    pub rotate_mb: Option<u64>,
    /// Rotate the file at this age (seconds).
    pub rotate_secs: Option<u64>,
    /// Seconds between live `stats` events. Default 60.
    pub stats_interval_secs: f64,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            path: None,
            rotate_mb: None,
            rotate_secs: None,
            stats_interval_secs: 60.0,
        }
    }
}

/// `[sensor]`: process settings.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSection {
    /// Drop root to this user once the capture handles are open.
    pub user: Option<String>,
    /// The `sensor_id` stamped on every event, telling a fleet's sensors apart. Default:
    /// the host name.
    pub id: Option<String>,
    /// File keeping the last `seq`, so it continues across restarts. Default: none for
    /// replay (seq starts at 1), `<sinks.spill_dir>/<sensor id>.seq` for the live sensor.
    pub seq_file: Option<std::path::PathBuf>,
}

/// `[flow]`: timeouts in seconds (fractions allowed) and the memory cap.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSection {
    /// Idle timeout of established TCP flows. Default 120.
    pub tcp_idle_secs: f64,
    /// Idle timeout of TCP flows never past SYN. Default 10.
    pub tcp_syn_idle_secs: f64,
    /// Idle timeout of UDP flows. Default 60.
    pub udp_idle_secs: f64,
    /// Idle timeout of ICMP and other flows. Default 30.
    pub other_idle_secs: f64,
    /// Active timeout (interim records); 0 disables. Default 300.
    pub active_timeout_secs: f64,
    /// Linger after TCP teardown for the final ACK. Default 1.
    pub tcp_close_linger_secs: f64,
    /// Maximum flows held (memory cap). Default 1,000,000.
    pub max_flows: usize,
}

impl Default for FlowSection {
    fn default() -> Self {
        FlowSection {
            tcp_idle_secs: 120.0,
            tcp_syn_idle_secs: 10.0,
            udp_idle_secs: 60.0,
            other_idle_secs: 30.0,
            active_timeout_secs: 300.0,
            tcp_close_linger_secs: 1.0,
            max_flows: 1_000_000,
        }
    }
}

/// `[fragments]`: the bounded table that attributes later IP fragments to flows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FragmentSection {
    /// Datagrams remembered at most. Default 65,536.
    pub capacity: usize,
    /// Seconds a first fragment's ports are remembered. Default 30.
    pub timeout_secs: f64,
}

impl Default for FragmentSection {
    fn default() -> Self {
        FragmentSection {
            capacity: 65_536,
            timeout_secs: 30.0,
        }
    }
}

fn secs(key: &'static str, v: f64, allow_zero: bool) -> Result<Nanos, ConfigError> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) || v > 1e9 {
        return Err(ConfigError::Invalid {
            key,
            value: v.to_string(),
            reason: if allow_zero {
                "must be a number of seconds >= 0"
            } else {
                "must be a number of seconds > 0"
            },
        });
    }
    Ok(Nanos::from_secs_f64(v))
}

impl FlowSection {
    /// Validates and converts to the flow table's settings.
    pub fn to_flow_config(&self) -> Result<FlowConfig, ConfigError> {
        if self.max_flows == 0 || self.max_flows > u32::MAX as usize - 1 {
            return Err(ConfigError::Invalid {
                key: "flow.max_flows",
                value: self.max_flows.to_string(),
                reason: "must be between 1 and 4294967294",
            });
        }
        let active = secs("flow.active_timeout_secs", self.active_timeout_secs, true)?;
        Ok(FlowConfig {
            tcp_idle: secs("flow.tcp_idle_secs", self.tcp_idle_secs, false)?,
            tcp_syn_idle: secs("flow.tcp_syn_idle_secs", self.tcp_syn_idle_secs, false)?,
            udp_idle: secs("flow.udp_idle_secs", self.udp_idle_secs, false)?,
            other_idle: secs("flow.other_idle_secs", self.other_idle_secs, false)?,
            active_timeout: if active.0 == 0 { None } else { Some(active) },
            tcp_close_linger: secs(
                "flow.tcp_close_linger_secs",
                self.tcp_close_linger_secs,
                true,
            )?,
            max_flows: self.max_flows,
        })
    }
}

impl FragmentSection {
    /// Validated (capacity, timeout).
    pub fn validated(&self) -> Result<(usize, Nanos), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::Invalid {
                key: "fragments.capacity",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        Ok((
            self.capacity,
            secs("fragments.timeout_secs", self.timeout_secs, false)?,
        ))
    }
}

impl ConfigFile {
    /// Checks every value that can be checked without opening anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.detect;
        if let Some(f) = d
            .fail_on
            .as_deref()
            .filter(|f| !matches!(*f, "anomaly" | "incident"))
        {
            return Err(ConfigError::Invalid {
                key: "detect.fail_on",
                value: f.to_string(),
                reason: "must be \"anomaly\" or \"incident\"",
            });
        }
        if d.no_detect && (d.model.is_some() || d.alerts_only || d.fail_on.is_some()) {
            return Err(ConfigError::Invalid {
                key: "detect.no_detect",
                value: "true".into(),
                reason:
                    "cannot be combined with detect.model, detect.alerts_only or detect.fail_on",
            });
        }
        self.flow.to_flow_config()?;
        self.fragments.validated()?;
        let c = &self.capture;
        if !(64..=262_144).contains(&c.snaplen) {
            return Err(ConfigError::Invalid {
                key: "capture.snaplen",
                value: c.snaplen.to_string(),
                reason: "must be between 64 and 262144 bytes (libpcap's largest)",
            });
        }
        if let Some(w) = self.pipeline.workers.filter(|&w| w > 256) {
            return Err(ConfigError::Invalid {
                key: "pipeline.workers",
                value: w.to_string(),
                reason: "must be at most 256",
            });
        }
        if c.buffer_mb < 1 {
            return Err(ConfigError::Invalid {
                key: "capture.buffer_mb",
                value: c.buffer_mb.to_string(),
                reason: "must be at least 1",
            });
        }
        if c.capture_threads == 0 || c.capture_threads > 64 {
            return Err(ConfigError::Invalid {
                key: "capture.capture_threads",
                value: c.capture_threads.to_string(),
                reason: "must be between 1 and 64",
            });
        }
        if c.timeout_ms < 1 {
            return Err(ConfigError::Invalid {
                key: "capture.timeout_ms",
                value: c.timeout_ms.to_string(),
                reason: "must be at least 1",
            });
        }
        if c.reader != "native" && c.reader != "libpcap" {
            return Err(ConfigError::Invalid {
                key: "capture.reader",
                value: c.reader.clone(),
                reason: "must be \"native\" or \"libpcap\"",
            });
        }
        secs(
            "output.stats_interval_secs",
            self.output.stats_interval_secs,
            false,
        )?;
        if let Some(id) = &self.sensor.id {
            crate::sink::check_sensor_id(id)?;
        }
        crate::sink::SinkSettings::new(String::new(), &self.sinks, &self.sink)?;
        if self.output.rotate_mb == Some(0) || self.output.rotate_secs == Some(0) {
            return Err(ConfigError::Invalid {
                key: "output.rotate_mb / output.rotate_secs",
                value: "0".into(),
                reason: "must be at least 1 (omit the key to disable rotation)",
            });
        }
        Ok(())
    }

    /// Parses TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_flow_defaults() {
        let c = ConfigFile::parse("", Path::new("x.toml")).map(|c| c.flow.to_flow_config());
        assert!(matches!(c, Ok(Ok(f)) if f == FlowConfig::default()));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = ConfigFile::parse("[flow]\nudp_idle = 3\n", Path::new("x.toml"));
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("udp_idle"), "{msg}");
        assert!(msg.contains("x.toml"), "{msg}");
    }

    #[test]
    fn zero_active_timeout_disables_and_negative_rejected() {
        let c = ConfigFile::parse("[flow]\nactive_timeout_secs = 0\n", Path::new("x"));
        let f = c.ok().and_then(|c| c.flow.to_flow_config().ok());
        assert_eq!(f.map(|f| f.active_timeout), Some(None));
        let c = ConfigFile::parse("[flow]\nudp_idle_secs = -1\n", Path::new("x"));
        assert!(c
            .ok()
            .map(|c| c.flow.to_flow_config().is_err())
            .unwrap_or(false));
    }
}
