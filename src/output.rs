//! The events stage: receives flow records in their final order, hands them to the
//! detector (when a model is loaded), and writes `flow`, `anomaly`, `incident` and `stats`
//! events through the [`EventWriter`]. Owns the choice of what is written (`--alerts-only`),
//! not how it is serialised (that is `event`) nor what is anomalous (that is `detect`).

use crate::error::OutputError;
use crate::event::EventWriter;
use crate::flow::FlowRecord;
use crate::order::Item;
use crate::packet::ArpPacket;
use crate::time::Timestamp;
use serde::Serialize;

/// A stage that looks at every ordered flow record (and ARP packet) and may write events
/// of its own: the detector.
pub trait FlowObserver: Send {
    /// One flow record, in output order. Alerts it raises are written to `w`.
    fn on_flow(&mut self, rec: &FlowRecord, w: &mut EventWriter) -> Result<(), OutputError>;
    /// A run of consecutive flow records that will be handed to [`FlowObserver::on_flow`]
    /// next, one by one and in this order, with no ARP packet between them: the observer
    /// may do their order-dependent work now and batch the rest (the detector scores the
    /// run's forests together). The default does nothing.
    fn prepare(&mut self, recs: &mut dyn Iterator<Item = &FlowRecord>) {
        let _ = recs;
    }
    /// One ARP packet, in capture order relative to flows ending at the same time.
    fn on_arp(&mut self, arp: &ArpPacket, w: &mut EventWriter) -> Result<(), OutputError>;
    /// The input ended or the sensor stops at packet time `ts`: close what is open.
    fn finish(&mut self, ts: Timestamp, w: &mut EventWriter) -> Result<(), OutputError>;
    /// Counters for the `stats` event.
    fn stats(&self) -> serde_json::Value;
    /// (anomaly events, incident events) written so far.
    fn alert_counts(&self) -> (u64, u64);
    /// A short human summary (devices with alerts, top scores) for stderr.
    fn human_summary(&self) -> String;
    /// Switches to a new model (SIGHUP reload); open incidents are kept.
    fn replace_model(&mut self, bundle: std::sync::Arc<crate::model::ModelBundle>, id: String);
    /// Starts doing the work of [`FlowObserver::prepare`] on a helper thread, so that the
    /// caller writes the events of one run while the next run is prepared
    /// ([`FlowObserver::submit`], [`FlowObserver::collect`]). Returns whether it did; the
    /// default does not.
    fn start_prepare_ahead(&mut self) -> Result<bool, OutputError> {
        Ok(false)
    }
    /// After [`FlowObserver::start_prepare_ahead`] returned `true`: hands a run (as for
    /// [`FlowObserver::prepare`]) to the helper thread without waiting for it. Runs are
    /// prepared in the order they are handed over.
    fn submit(&mut self, recs: &mut dyn Iterator<Item = &FlowRecord>) -> Result<(), OutputError> {
        self.prepare(recs);
        Ok(())
    }
    /// Waits until the oldest run handed to [`FlowObserver::submit`] is prepared, and takes
    /// it for the [`FlowObserver::on_flow`] calls of its records.
    fn collect(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    /// The device id that keys the `flow` event of the record last passed to
    /// [`FlowObserver::on_flow`] (its first monitored side), so a device's flows go to
    /// the same Kafka partition as its alerts; `None` keys it by the originator address.
    fn flow_key(&self) -> Option<&str> {
        None
    }
}

/// Where the loaded model came from, so SIGHUP can reload it when the file changed.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// The model file.
    pub path: std::path::PathBuf,
    /// Id of the model in use.
    pub id: String,
    /// SHA-1 of the whole file in use: a reload compares it, not the id, which is read
    /// from the header and so survives a damaged or truncated body.
    pub digest: [u8; 20],
}

/// Most flow records handed to [`FlowObserver::prepare`] at once (bounds the verdicts
/// held ahead of their events).
pub const PREPARE_RUN: usize = 256;

/// The output stage of a run.
pub struct Output {
    /// The event writer.
    pub writer: EventWriter,
    /// Write a `flow` event for every record (off with `--alerts-only`).
    pub emit_flows: bool,
    /// The detector, if a model is loaded.
    pub observer: Option<Box<dyn FlowObserver>>,
    /// Collect records in memory instead of (or as well as) writing them (training).
    pub collected: Option<Vec<FlowRecord>>,
    /// The model file in use, when loaded from a path.
    pub model_source: Option<ModelSource>,
    /// The observer prepares runs on its helper thread
    /// ([`Output::start_prepare_ahead`]).
    prepare_ahead: bool,
    /// The observer still being built (the model decoded) on another thread
    /// ([`Output::set_pending_observer`]).
    pending: Option<PendingObserver>,
    /// [`Output::start_prepare_ahead`] was asked for while the observer was pending.
    want_prepare_ahead: bool,
}

/// An observer being built on another thread: the model file's decoding and checks.
pub type PendingObserver = std::thread::JoinHandle<Result<Box<dyn FlowObserver>, String>>;

/// The `stats` event body with the detector's counters added.
#[derive(Serialize)]
struct WithDetection<'a, T: Serialize> {
    #[serde(flatten)]
    base: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    detection: Option<serde_json::Value>,
    /// Per-sink delivery counters (only when `--sink` is used).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sinks: Vec<crate::sink::SinkStats>,
}

impl Output {
    /// Flow events only, no detector.
    pub fn flows_only(writer: EventWriter) -> Output {
        Output {
            writer,
            emit_flows: true,
            observer: None,
            collected: None,
            model_source: None,
            prepare_ahead: false,
            pending: None,
            want_prepare_ahead: false,
        }
    }

    /// Lets the observer be built on another thread while the run starts (decoding the
    /// model takes tens of milliseconds, while reading and flow keeping need no model).
    /// It is waited for before anything is written: the first records, ARP packets, the
    /// end of the run or a `stats` event. A model that fails there ends the run with
    /// [`OutputError::Model`] before any event is written.
    pub fn set_pending_observer(&mut self, pending: PendingObserver) {
        self.observer = None;
        self.pending = Some(pending);
    }

    /// Waits for a pending observer ([`Output::set_pending_observer`]) and installs it.
    pub fn resolve_observer(&mut self) -> Result<(), OutputError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let obs = pending
            .join()
            .map_err(|_| OutputError::Thread {
                what: "model loading thread".into(),
                detail: "stopped unexpectedly".into(),
            })?
            .map_err(OutputError::Model)?;
        self.observer = Some(obs);
        if self.want_prepare_ahead {
            self.start_prepare_ahead()?;
        }
        Ok(())
    }

    /// Lets the observer analyse and score runs of records on a helper thread while this
    /// thread writes the events of the runs before them (the threaded pipeline, where the
    /// merging thread would otherwise do both one after the other). The events are the
    /// same: the helper sees the runs in order, and ARP packets (whose rules read the
    /// device state) are handled once every run before them is written.
    pub fn start_prepare_ahead(&mut self) -> Result<(), OutputError> {
        if self.pending.is_some() {
            // Started once the observer is there (it is waited for before any record).
            self.want_prepare_ahead = true;
            return Ok(());
        }
        if let Some(obs) = self.observer.as_mut() {
            self.prepare_ahead = obs.start_prepare_ahead()?;
        }
        Ok(())
    }

    /// Reloads the model file if it changed (SIGHUP). A new model that fails to load is
    /// refused with an `error` event naming the file, and the old model stays in use.
    /// Returns the id of the new model when one was loaded.
    pub fn reload_model(&mut self) -> Result<Option<String>, OutputError> {
        self.resolve_observer()?;
        let (Some(src), Some(obs)) = (self.model_source.as_mut(), self.observer.as_mut()) else {
            return Ok(None);
        };
        let name = src.path.display().to_string();
        let loaded = std::fs::read(&src.path)
            .map_err(|e| format!("{name}: cannot read model file: {e}"))
            .and_then(|bytes| {
                let digest = crate::model::ModelBundle::file_digest(&bytes);
                if digest == src.digest {
                    return Ok(None);
                }
                let id = crate::model::ModelBundle::id_of(&bytes);
                crate::model::ModelBundle::from_bytes(&bytes, &name)
                    .map(|b| Some((b, id, digest)))
                    .map_err(|e| e.to_string())
            });
        match loaded {
            Ok(None) => Ok(None),
            Ok(Some((bundle, id, digest))) => {
                // For the service log: a reload is otherwise only seen in later events.
                eprintln!("flowsentry: model {id} loaded from {name} (was {})", src.id);
                obs.replace_model(std::sync::Arc::new(bundle), id.clone());
                src.id = id.clone();
                src.digest = digest;
                Ok(Some(id))
            }
            Err(msg) => {
                let msg = format!("model reload refused, keeping model {}: {msg}", src.id);
                self.writer.write_error_event(&msg)?;
                Ok(None)
            }
        }
    }

    /// Handles ordered items (flow records and ARP packets), draining `items`. The flow
    /// records between two ARP packets, up to [`PREPARE_RUN`] at a time, are first handed
    /// to the observer together ([`FlowObserver::prepare`]); the events are the same as
    /// handling the items one by one.
    pub fn on_items(&mut self, items: &mut Vec<Item>) -> Result<(), OutputError> {
        self.resolve_observer()?;
        let done = self.handle_items(items);
        items.clear();
        done
    }

    fn handle_items(&mut self, items: &[Item]) -> Result<(), OutputError> {
        if self.prepare_ahead {
            return self.handle_items_ahead(items);
        }
        let mut start = 0;
        while start < items.len() {
            let run = items[start..]
                .iter()
                .take(PREPARE_RUN)
                .take_while(|i| matches!(i, Item::Flow(_)))
                .count()
                .max(1);
            let run = &items[start..start + run];
            start += run.len();
            if run.len() > 1 {
                if let Some(obs) = self.observer.as_mut() {
                    obs.prepare(&mut run.iter().filter_map(|i| match i {
                        Item::Flow(r) => Some(r),
                        Item::Arp(..) => None,
                    }));
                }
            }
            for item in run {
                match item {
                    Item::Flow(rec) => {
                        self.handle_record(rec)?;
                        if let Some(c) = self.collected.as_mut() {
                            c.push(*rec);
                        }
                    }
                    Item::Arp(a, _, _) => self.on_arp(a)?,
                }
            }
        }
        Ok(())
    }

    /// [`Output::handle_items`] with the observer preparing ahead: every run of a stretch
    /// of flow records between two ARP packets is handed to the helper first, then each
    /// run's events are written as soon as it is prepared (while the helper prepares the
    /// next). The runs are the same as in [`Output::handle_items`].
    fn handle_items_ahead(&mut self, items: &[Item]) -> Result<(), OutputError> {
        fn flows(run: &[Item]) -> impl Iterator<Item = &FlowRecord> {
            run.iter().filter_map(|i| match i {
                Item::Flow(r) => Some(r),
                Item::Arp(..) => None,
            })
        }
        let mut start = 0;
        while start < items.len() {
            let n = items[start..]
                .iter()
                .take_while(|i| matches!(i, Item::Flow(_)))
                .count();
            if n == 0 {
                if let Item::Arp(a, _, _) = &items[start] {
                    self.on_arp(a)?;
                }
                start += 1;
                continue;
            }
            let stretch = &items[start..start + n];
            start += n;
            if let Some(obs) = self.observer.as_mut() {
                for run in stretch.chunks(PREPARE_RUN) {
                    obs.submit(&mut flows(run))?;
                }
            }
            let mut runs = stretch.chunks(PREPARE_RUN);
            let written = runs.try_for_each(|run| {
                if let Some(obs) = self.observer.as_mut() {
                    obs.collect()?;
                }
                for rec in flows(run) {
                    self.handle_record(rec)?;
                    if let Some(c) = self.collected.as_mut() {
                        c.push(*rec);
                    }
                }
                Ok(())
            });
            if let Err(e) = written {
                // Leave no run with the helper: take the rest back (analysed, not
                // written: the run ends with this error).
                if let Some(obs) = self.observer.as_mut() {
                    for _ in runs {
                        obs.collect()?;
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn handle_record(&mut self, rec: &FlowRecord) -> Result<(), OutputError> {
        if let Some(obs) = self.observer.as_mut() {
            obs.on_flow(rec, &mut self.writer)?;
        }
        if self.emit_flows {
            let device = self.observer.as_ref().and_then(|o| o.flow_key());
            self.writer.write_flow(rec, device)?;
        }
        Ok(())
    }

    /// Handles one ARP packet.
    pub fn on_arp(&mut self, arp: &ArpPacket) -> Result<(), OutputError> {
        self.resolve_observer()?;
        match self.observer.as_mut() {
            Some(obs) => obs.on_arp(arp, &mut self.writer),
            None => Ok(()),
        }
    }

    /// Closes the detector's open state (incidents) at packet time `ts`.
    pub fn finish(&mut self, ts: Timestamp) -> Result<(), OutputError> {
        self.resolve_observer()?;
        match self.observer.as_mut() {
            Some(obs) => obs.finish(ts, &mut self.writer),
            None => Ok(()),
        }
    }

    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.writer.written()
    }

    /// Writes a `stats` event (the detector's counters included under `detection`, the
    /// sinks' under `sinks`).
    pub fn write_stats<T: Serialize>(
        &mut self,
        ts: Timestamp,
        stats: &T,
    ) -> Result<(), OutputError> {
        self.resolve_observer()?;
        let body = WithDetection {
            base: stats,
            detection: self.observer.as_ref().map(|o| o.stats()),
            sinks: self.writer.sink_stats(),
        };
        self.writer.write_stats(ts, &body)
    }

    /// Flushes buffered events.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.writer.flush()
    }

    /// Flushes and fsyncs.
    pub fn close(&mut self) -> Result<(), OutputError> {
        self.writer.close()
    }

    /// End of a run: waits (bounded by the drain time) for the sinks to deliver what is
    /// queued, so the final `stats` event reports it.
    pub fn drain_sinks(&mut self) -> Result<(), OutputError> {
        self.writer.drain_sinks()
    }

    /// After the final `stats` event: closes the sinks (what is undelivered stays in their
    /// spill directories) and returns their final counters.
    pub fn close_sinks(&mut self) -> Result<Vec<crate::sink::SinkStats>, OutputError> {
        self.writer.close_sinks()
    }

    /// Reopens a file output (SIGHUP).
    pub fn reopen(&mut self) -> Result<(), OutputError> {
        self.writer.reopen()
    }

    /// Rotates a time-rotated file when due.
    pub fn rotate_if_due(&mut self) -> Result<(), OutputError> {
        self.writer.rotate_if_due()
    }
}
