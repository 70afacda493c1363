//! The Kafka transport: librdkafka's `BaseProducer` with a [`ProducerContext`] of our own
//! whose delivery callback records, per event, whether the broker acknowledged it (the
//! default context drops those reports, so a failing topic would look delivered). Events
//! are keyed by `<sensor_id>/<device>` so one device's events stay in one partition, in
//! order; compression is on (lz4 unless configured). Owns producer settings and the
//! mapping from delivery reports to acknowledgements; ordering, retries and spilling are
//! the [`super::queued`] sink's.

use super::queued::Transport;
use super::{Record, SinkError, SinkTable};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Producer options of a Kafka sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// `compression.type`: `lz4`, `gzip`, `snappy` or `none`.
    pub compression: String,
    /// `acks`: `all` or `1`.
    pub acks: String,
    /// `message.timeout.ms`: how long librdkafka retries one message before it reports
    /// the message failed.
    pub message_timeout_ms: u64,
    /// `linger.ms`.
    pub linger_ms: u64,
}

impl KafkaOptions {
    /// Reads and checks the Kafka keys of a sink table.
    pub fn from_table(t: &SinkTable, url: &str) -> Result<KafkaOptions, SinkError> {
        let bad = |key: &str, value: &str, reason: &str| SinkError::Option {
            url: super::redact(url),
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        };
        let compression = t.compression.clone().unwrap_or_else(|| "lz4".into());
        if !["lz4", "gzip", "snappy", "none"].contains(&compression.as_str()) {
            return Err(bad(
                "compression",
                &compression,
                "must be lz4, gzip, snappy or none",
            ));
        }
        let acks = t.acks.clone().unwrap_or_else(|| "all".into());
        if acks != "all" && acks != "1" {
            return Err(bad(
                "acks",
                &acks,
                "must be all or 1 (0 would make delivery unconfirmable)",
            ));
        }
        let message_timeout_ms = t.message_timeout_ms.unwrap_or(5000);
        if !(100..=900_000).contains(&message_timeout_ms) {
            return Err(bad(
                "message_timeout_ms",
                &message_timeout_ms.to_string(),
                "must be between 100 and 900000",
            ));
        }
        let linger_ms = t.linger_ms.unwrap_or(5);
        if linger_ms > 10_000 {
            return Err(bad(
                "linger_ms",
                &linger_ms.to_string(),
                "must be at most 10000",
            ));
        }
        Ok(KafkaOptions {
            compression,
            acks,
            message_timeout_ms,
            linger_ms,
        })
    }
}

/// Delivery reports of the batch in flight: (index in the batch, error text if failed).
#[derive(Default)]
struct Reports {
    done: Vec<(usize, Option<String>)>,
    last_client_error: Option<String>,
}

/// Our producer context: every delivery report is recorded, success or failure.
pub struct Context {
    reports: Arc<Mutex<Reports>>,
}

impl ClientContext for Context {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _fac: &str, _msg: &str) {}

    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut r) = self.reports.lock() {
            r.last_client_error = Some(format!("{error}: {reason}"));
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let err = match result {
            Ok(_) => None,
            Err((e, _)) => Some(e.to_string()),
        };
        if let Ok(mut r) = self.reports.lock() {
            r.done.push((index, err));
        }
    }
}

/// Builds the client settings shared by the producer and `tail`'s consumer.
pub fn base_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        .set("socket.timeout.ms", "5000")
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "0");
    c
}

/// A Kafka topic as a [`Transport`].
pub struct KafkaTransport {
    producer: BaseProducer<Context>,
    reports: Arc<Mutex<Reports>>,
    topic: String,
    timeout: Duration,
    connected: bool,
}

impl KafkaTransport {
    /// Creates the producer (no connection is made yet).
    pub fn new(
        brokers: &str,
        topic: &str,
        opts: &KafkaOptions,
        sensor_id: &str,
    ) -> Result<KafkaTransport, String> {
        let reports = Arc::new(Mutex::new(Reports::default()));
        let mut c = base_config(brokers, &format!("flowsentry-{sensor_id}"));
        c.set("compression.type", &opts.compression)
            .set("acks", &opts.acks)
            .set("message.timeout.ms", opts.message_timeout_ms.to_string())
            .set("linger.ms", opts.linger_ms.to_string())
            // Java clients' partitioner: the same key lands in the same partition whichever
            // producer wrote it.
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", "200000");
        let producer: BaseProducer<Context> = c
            .create_with_context(Context {
                reports: reports.clone(),
            })
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        Ok(KafkaTransport {
            producer,
            reports,
            topic: topic.to_string(),
            timeout: Duration::from_millis(opts.message_timeout_ms) + Duration::from_secs(2),
            connected: false,
        })
    }

    fn take_reports(&self) -> Vec<(usize, Option<String>)> {
        self.reports
            .lock()
            .map(|mut r| std::mem::take(&mut r.done))
            .unwrap_or_default()
    }
}

impl Transport for KafkaTransport {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    /// Asks the broker for the topic's metadata: reachable, and the topic exists.
    fn connect(&mut self) -> Result<(), String> {
        let md = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), Duration::from_secs(3))
            .map_err(|e| format!("cannot reach the Kafka broker: {e}"))?;
        let t = md.topics().iter().find(|t| t.name() == self.topic);
        match t {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                self.connected = true;
                Ok(())
            }
            Some(t) => Err(format!(
                "topic {} is not available ({}); create it on the broker",
                self.topic,
                t.error()
                    .map(|e| format!("{:?}", RDKafkaErrorCode::from(e)))
                    .unwrap_or_else(|| "no partitions".into())
            )),
            None => Err(format!(
                "topic {} does not exist; create it on the broker",
                self.topic
            )),
        }
    }

    fn is_connected(&self) -> bool {
        self.connected
    }

    fn send_timeout(&self) -> Duration {
        self.timeout
    }

    fn send(
        &mut self,
        batch: &[Arc<Record>],
        acked: &mut [bool],
        deadline: Instant,
    ) -> Result<(), String> {
        let _ = self.take_reports();
        let mut queued = 0usize;
        let mut first_error: Option<String> = None;
        for (i, rec) in batch.iter().enumerate() {
            loop {
                let r = BaseRecord::with_opaque_to(&self.topic, i)
                    .key(rec.key.as_bytes())
                    .payload(&rec.line[..]);
                match self.producer.send(r) {
                    Ok(()) => {
                        queued += 1;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if Instant::now() < deadline =>
                    {
                        self.producer.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        first_error.get_or_insert_with(|| format!("cannot queue event: {e}"));
                        break;
                    }
                }
            }
        }
        // Wait for a delivery report for every queued event.
        let mut got = 0usize;
        let mut record = |reports: Vec<(usize, Option<String>)>,
                          first_error: &mut Option<String>| {
            for (i, err) in reports {
                got += 1;
                match err {
                    None => {
                        if let Some(a) = acked.get_mut(i) {
                            *a = true;
                        }
                    }
                    Some(e) => {
                        first_error.get_or_insert_with(|| format!("delivery failed: {e}"));
                    }
                }
            }
            got
        };
        while record(self.take_reports(), &mut first_error) < queued && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(20));
        }
        if record(Vec::new(), &mut first_error) < queued {
            // Out of time: take back what librdkafka still holds (each purged event gets
            // a failure report), so it is retried by us and not delivered behind our back.
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let until = Instant::now() + Duration::from_secs(2);
            while record(self.take_reports(), &mut first_error) < queued && Instant::now() < until {
                self.producer.poll(Duration::from_millis(20));
            }
            first_error.get_or_insert_with(|| "timed out waiting for delivery reports".into());
        }
        match first_error {
            None => Ok(()),
            Some(e) => {
                // Let the next attempt re-check the broker and topic first.
                self.connected = false;
                let client = self
                    .reports
                    .lock()
                    .ok()
                    .and_then(|mut r| r.last_client_error.take());
                Err(match client {
                    Some(c) => format!("{e} ({c})"),
                    None => e,
                })
            }
        }
    }
}
