//! The model bundle: one file holding, per device class, an isolation forest and its
//! calibrated threshold (and, where the class has enough TCP or UDP flows, a forest and
//! threshold per transport), plus a pooled model for devices of unknown class, the
//! familiarity tables (F26/F27), the device-class inference model, the Modbus write
//! allow-list, the feature schema and the training metadata.
//!
//! File format (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `FSMODEL\0` |
//! | 8 | 2 | format major version (incompatible changes) |
//! | 10 | 2 | format minor version (compatible additions) |
//! | 12 | 4 | feature schema version ([`crate::features::FEATURE_SCHEMA_VERSION`]) |
//! | 16 | 8 | body length in bytes |
//! | 24 | 20 | SHA-1 of the body |
//! | 44 | n | body: [`ModelBundle`] encoded with bincode 2 (serde, standard config) |
//!
//! Loading checks magic, version, schema, length and checksum, then decodes the body
//! with a hard size limit (a corrupt length prefix inside the body can never make the
//! decoder allocate more than [`MAX_BODY`]; every forest is validated structurally as it
//! is decoded), then checks the thresholds, the per-transport order and the inference
//! trees. Any failure is an error naming the file.

use crate::device::{ClassInference, ClassSource, DeviceClass};
use crate::features::{FamiliarityTables, FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
use crate::forest::IsolationForest;
use crate::packet::Addr;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The shipped default model, embedded at build time (empty if `models/default.fsm` was
/// absent when building).
pub static BUILTIN_MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default.fsm"));

/// File magic.
pub const MAGIC: &[u8; 8] = b"FSMODEL\0";
/// Format major version.
pub const FORMAT_MAJOR: u16 = 5;
/// Format minor version.
pub const FORMAT_MINOR: u16 = 0;
/// Largest body accepted (bytes).
pub const MAX_BODY: usize = 256 << 20;
const HEADER: usize = 44;

/// Errors loading or saving a model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// I/O.
    #[error("{path}: cannot read model file: {source}")]
    Read {
        /// File.
        path: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// Writing failed.
    #[error("{path}: cannot write model file: {source}")]
    Write {
        /// File.
        path: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{path}: model file is empty; train one with `flowsentry train`")]
    Empty {
        /// File.
        path: String,
    },
    /// Not a flowsentry model.
    #[error("{path}: not a flowsentry model file (bad magic); train one with `flowsentry train`")]
    Magic {
        /// File.
        path: String,
    },
    /// Unsupported format version.
    #[error("{path}: model format version {major}.{minor} is not supported by this build (expects {FORMAT_MAJOR}.x); retrain the model")]
    Version {
        /// File.
        path: String,
        /// Major found.
        major: u16,
        /// Minor found.
        minor: u16,
    },
    /// Feature schema mismatch.
    #[error("{path}: model was trained for feature schema {found}, this build computes schema {FEATURE_SCHEMA_VERSION}; retrain the model")]
    Schema {
        /// File.
        path: String,
        /// Schema found.
        found: u32,
    },
    /// Truncated file.
    #[error("{path}: model file is truncated ({have} bytes, header says {want})")]
    Truncated {
        /// File.
        path: String,
        /// Bytes present.
        have: u64,
        /// Bytes expected.
        want: u64,
    },
    /// Checksum mismatch.
    #[error("{path}: model file is corrupt (checksum mismatch)")]
    Checksum {
        /// File.
        path: String,
    },
    /// The body did not decode or failed validation.
    #[error("{path}: model file is corrupt: {detail}")]
    Corrupt {
        /// File.
        path: String,
        /// What failed.
        detail: String,
    },
}

/// The transport a per-transport forest covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Transport {
    /// IP protocol 6.
    Tcp,
    /// IP protocol 17.
    Udp,
}

impl Transport {
    /// The transport of IP protocol `proto` (`None`: ICMP and the rest, scored by the
    /// class-wide forest).
    pub fn of(proto: u8) -> Option<Transport> {
        match proto {
            6 => Some(Transport::Tcp),
            17 => Some(Transport::Udp),
            _ => None,
        }
    }

    /// Lower-case name (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// A class's forest for the flows of one transport (design `detection.md` §1.3: one
/// forest per class and transport, as HorusEye trains separate TCP and UDP forests). A
/// class whose traffic is mostly one mode (a hub's one-packet mDNS/SSDP multicasts) would
/// otherwise rank its minority modes (its TCP sessions) as anomalous and one-packet
/// attack flows as normal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportModel {
    /// The transport.
    pub transport: Transport,
    /// The forest, fitted on the class's training rows of this transport.
    pub forest: IsolationForest,
    /// Score threshold: the (1 - target FPR / 2) quantile of this transport's calibration
    /// scores.
    pub threshold: f64,
    /// False-positive rate achieved on the calibration data at that threshold.
    pub calibration_fpr: f64,
    /// Training rows.
    pub n_train: u64,
    /// Calibration rows.
    pub n_calibration: u64,
}

/// One class's detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassModel {
    /// The class (`Unknown` for the pooled model).
    pub class: DeviceClass,
    /// The forest.
    pub forest: IsolationForest,
    /// Score threshold: the (1 - target FPR) quantile of calibration scores.
    pub threshold: f64,
    /// False-positive rate achieved on the calibration data at that threshold.
    pub calibration_fpr: f64,
    /// Training rows.
    pub n_train: u64,
    /// Calibration rows.
    pub n_calibration: u64,
    /// Training-envelope guard threshold: the (1 - target FPR / 2) quantile of
    /// calibration envelope excesses ([`crate::detect::envelope`]).
    pub envelope_threshold: f64,
    /// False-positive rate of the envelope guard on the calibration data.
    pub envelope_calibration_fpr: f64,
    /// Per-transport forests, sorted by transport, at most one each. A flow whose
    /// transport has none here is scored by `forest`, which also gives the envelope
    /// guard's training ranges for every transport.
    pub transports: Vec<TransportModel>,
}

impl ClassModel {
    /// The forest scoring a flow of IP protocol `proto` for a device whose class came
    /// from `source`, with its threshold and calibration FPR. Per-transport forests
    /// score operator-listed devices only, like a class's envelope guard: an inferred
    /// class is a guess (an HMI inferred as a thermostat polls PLCs over Modbus, which no
    /// thermostat TCP flow resembles); everything else gets the class-wide forest.
    pub fn scorer(&self, proto: u8, source: ClassSource) -> Scorer<'_> {
        match source {
            ClassSource::Inventory => self.scorer_of(Transport::of(proto)),
            ClassSource::Inferred | ClassSource::Unknown => self.scorer_of(None),
        }
    }

    /// The scorer of a verdict's `transport` (`None`: the class-wide forest).
    pub fn scorer_of(&self, transport: Option<Transport>) -> Scorer<'_> {
        match transport.and_then(|t| self.transports.iter().find(|m| m.transport == t)) {
            Some(m) => Scorer {
                transport: Some(m.transport),
                forest: &m.forest,
                threshold: m.threshold,
                calibration_fpr: m.calibration_fpr,
            },
            None => Scorer {
                transport: None,
                forest: &self.forest,
                threshold: self.threshold,
                calibration_fpr: self.calibration_fpr,
            },
        }
    }
}

/// The forest that scores a flow, with its threshold.
#[derive(Debug, Clone, Copy)]
pub struct Scorer<'a> {
    /// The per-transport forest's transport (`None`: the class-wide forest).
    pub transport: Option<Transport>,
    /// The forest.
    pub forest: &'a IsolationForest,
    /// Its score threshold.
    pub threshold: f64,
    /// Its calibration FPR.
    pub calibration_fpr: f64,
}

/// Where and how the bundle was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingMeta {
    /// Seed of every random choice.
    pub seed: u64,
    /// Trees per forest.
    pub n_trees: u64,
    /// Subsample size per tree.
    pub max_samples: u64,
    /// Target false-positive rate of the thresholds.
    pub target_fpr: f64,
    /// Confidence of the thresholds' calibration (`train --calibration-confidence`):
    /// `None` for the plain (1 − F) quantile.
    pub calibration_confidence: Option<f64>,
    /// Training captures (file names only).
    pub training_inputs: Vec<String>,
    /// Calibration captures (file names only).
    pub calibration_inputs: Vec<String>,
    /// First and last packet time of the training window (µs since epoch).
    pub training_window_us: (i64, i64),
    /// First and last packet time of the calibration window (µs since epoch).
    pub calibration_window_us: (i64, i64),
    /// flowsentry version that trained it.
    pub flowsentry_version: String,
}

/// The whole model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelBundle {
    /// Feature names, in vector order (must equal this build's).
    pub feature_names: Vec<String>,
    /// Per-class models, sorted by class.
    pub classes: Vec<ClassModel>,
    /// The pooled model for devices of unknown class (and the global baseline).
    pub pooled: ClassModel,
    /// Familiarity tables learned from the training window.
    pub familiarity: FamiliarityTables,
    /// Device-class inference for devices not in the inventory.
    pub inference: Option<ClassInference>,
    /// (PLC, master) pairs that wrote to a PLC in training: writes from anyone else alert.
    pub modbus_write_masters: Vec<(Addr, Addr)>,
    /// Training metadata.
    pub meta: TrainingMeta,
}

impl ModelBundle {
    /// The model scoring devices of `class` (the pooled one when the class has none).
    pub fn model_for(&self, class: DeviceClass) -> &ClassModel {
        self.classes
            .iter()
            .find(|m| m.class == class)
            .unwrap_or(&self.pooled)
    }

    /// Serialises to the file format.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let body = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
        out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
        out.extend_from_slice(&FEATURE_SCHEMA_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&<sha1::Sha1 as sha1::Digest>::digest(&body));
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Parses the file format; `path` names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<ModelBundle, ModelError> {
        let p = || path.to_string();
        if bytes.is_empty() {
            return Err(ModelError::Empty { path: p() });
        }
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(ModelError::Magic { path: p() });
        }
        if bytes.len() < HEADER {
            return Err(ModelError::Truncated {
                path: p(),
                have: bytes.len() as u64,
                want: HEADER as u64,
            });
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let (major, minor) = (u16_at(8), u16_at(10));
        if major != FORMAT_MAJOR {
            return Err(ModelError::Version {
                path: p(),
                major,
                minor,
            });
        }
        let schema = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        if schema != FEATURE_SCHEMA_VERSION {
            return Err(ModelError::Schema {
                path: p(),
                found: schema,
            });
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&bytes[16..24]);
        let body_len = u64::from_le_bytes(len8);
        let have = (bytes.len() - HEADER) as u64;
        if body_len > MAX_BODY as u64 {
            return Err(ModelError::Corrupt {
                path: p(),
                detail: format!("body length {body_len} exceeds the {MAX_BODY}-byte limit"),
            });
        }
        if have < body_len {
            return Err(ModelError::Truncated {
                path: p(),
                have: bytes.len() as u64,
                want: HEADER as u64 + body_len,
            });
        }
        if have > body_len {
            return Err(ModelError::Corrupt {
                path: p(),
                detail: format!(
                    "{} bytes after the {body_len}-byte body the header announces",
                    have - body_len
                ),
            });
        }
        let body = &bytes[HEADER..];
        if <sha1::Sha1 as sha1::Digest>::digest(body)[..] != bytes[24..44] {
            return Err(ModelError::Checksum { path: p() });
        }
        let cfg = bincode::config::standard().with_limit::<MAX_BODY>();
        let (bundle, used): (ModelBundle, usize) = bincode::serde::decode_from_slice(body, cfg)
            .map_err(|e| ModelError::Corrupt {
                path: p(),
                detail: e.to_string(),
            })?;
        if used != body.len() {
            return Err(ModelError::Corrupt {
                path: p(),
                detail: format!("{} trailing bytes after the model", body.len() - used),
            });
        }
        bundle
            .validate()
            .map_err(|detail| ModelError::Corrupt { path: p(), detail })?;
        Ok(bundle)
    }

    /// Structural checks beyond decoding.
    pub fn validate(&self) -> Result<(), String> {
        let names: Vec<&str> = self.feature_names.iter().map(|s| s.as_str()).collect();
        if names != FEATURE_NAMES {
            return Err("feature names differ from this build's feature vector".into());
        }
        // The forests themselves need no check here: an `IsolationForest` exists only
        // through `IsolationForest::from_parts` (fitting, import and decoding all go
        // through it), which validates it, so a decoded bundle's forests were checked
        // while decoding (a structural error there is a decode error naming the forest).
        // One forest and its threshold, named `name` in errors.
        let check = |name: &dyn std::fmt::Display, forest: &IsolationForest, thr: f64| {
            if forest.n_features() != N_FEATURES {
                return Err(format!(
                    "{name} forest has {} features, expected {N_FEATURES}",
                    forest.n_features()
                ));
            }
            if !(thr.is_finite() && thr > 0.0 && thr <= 1.0) {
                return Err(format!("{name} threshold {thr} is not in (0, 1]"));
            }
            Ok(())
        };
        for m in self.classes.iter().chain(std::iter::once(&self.pooled)) {
            check(&m.class, &m.forest, m.threshold)?;
            if m.transports
                .windows(2)
                .any(|w| w[0].transport >= w[1].transport)
            {
                return Err(format!(
                    "{} per-transport forests are not sorted and unique",
                    m.class
                ));
            }
            for t in &m.transports {
                let name = format!("{}/{}", m.class, t.transport.as_str());
                check(&name, &t.forest, t.threshold)?;
            }
            if !(m.envelope_threshold.is_finite() && m.envelope_threshold >= 0.0) {
                return Err(format!(
                    "{} envelope threshold {} is not a finite non-negative number",
                    m.class, m.envelope_threshold
                ));
            }
        }
        if let Some(inf) = &self.inference {
            inf.validate()
                .map_err(|e| format!("inference model: {e}"))?;
        }
        Ok(())
    }

    /// Writes the file (atomically: temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let name = path.display().to_string();
        let bytes = self.to_bytes().map_err(|detail| ModelError::Corrupt {
            path: name.clone(),
            detail,
        })?;
        let tmp = path.with_extension("fsm.tmp");
        std::fs::write(&tmp, &bytes)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| ModelError::Write { path: name, source })
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<ModelBundle, ModelError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
            path: name.clone(),
            source,
        })?;
        Self::from_bytes(&bytes, &name)
    }

    /// SHA-1 of a whole model file (header and body), to tell whether a file changed.
    pub fn file_digest(bytes: &[u8]) -> [u8; 20] {
        <sha1::Sha1 as sha1::Digest>::digest(bytes).into()
    }

    /// Short id of a serialised model: the first 16 hex digits of its body's SHA-1, as
    /// stored in the header (bytes 24-31).
    pub fn id_of(bytes: &[u8]) -> String {
        bytes
            .get(24..32)
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
            .unwrap_or_default()
    }
}
