//! `flowsentry tail URL`: reads events back from a Kafka topic (every partition, from the
//! beginning) or a Redis stream and prints them as JSON Lines, to check what a fleet's
//! sensors delivered. By default it stops once it has caught up with what the server held
//! when it started (for Kafka: the end of every partition, then one quiet second);
//! `--follow` keeps reading. Owns nothing else.

use std::io::Write;
use std::time::{Duration, Instant};

/// Quiet time after the end of every partition before `tail` (without `--follow`) stops.
const SETTLE: Duration = Duration::from_millis(1000);

/// `flowsentry tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// `kafka://HOST:PORT/TOPIC` or `redis://[USER:PASS@]HOST:PORT/STREAM`.
    pub url: String,
    /// Keep reading new events until interrupted (or `--count` / `--idle-secs`).
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// With `--follow`: stop after this many seconds without a new event.
    #[arg(long, value_name = "SECS")]
    pub idle_secs: Option<f64>,
    /// Wrap each event with where it was stored: `{"partition":P,"offset":O,"key":K,"event":{...}}`
    /// for Kafka, `{"id":ID,"event":{...}}` for Redis.
    #[arg(long)]
    pub with_meta: bool,
    /// Give up when the server does not answer within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout_secs: f64,
}

/// Errors of `tail`.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The URL is not a Kafka or Redis sink URL.
    #[error("{0}")]
    Url(String),
    /// The server could not be read.
    #[error("{url}: {detail}")]
    Server {
        /// The URL without credentials.
        url: String,
        /// What failed.
        detail: String,
    },
    /// Standard output failed.
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

/// Runs `tail`; returns the number of events printed.
pub fn run(a: &TailArgs, out: &mut dyn Write) -> Result<u64, TailError> {
    let spec = super::SinkSpec::parse(
        &super::SinkTable {
            url: a.url.clone(),
            ..super::SinkTable::default()
        },
        &super::SinksSection::default(),
    )
    .map_err(|e| TailError::Url(e.to_string()))?;
    let timeout = Duration::from_secs_f64(a.timeout_secs.clamp(0.1, 3600.0));
    let limits = Limits {
        meta: a.with_meta,
        count: a.count,
        follow: a.follow,
        idle: a
            .idle_secs
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e6))),
        timeout,
    };
    let server = |detail: String| TailError::Server {
        url: spec.name.clone(),
        detail,
    };
    match &spec.target {
        super::Target::Kafka { brokers, topic, .. } => {
            kafka(brokers, topic, &limits, out).map_err(|e| match e {
                Fail::Server(d) => server(d),
                Fail::Stdout(e) => TailError::Stdout(e),
            })
        }
        super::Target::Redis {
            client_url, stream, ..
        } => redis(client_url, stream, &limits, out).map_err(|e| match e {
            Fail::Server(d) => server(d),
            Fail::Stdout(e) => TailError::Stdout(e),
        }),
        _ => Err(TailError::Url(format!(
            "{}: tail reads kafka:// and redis:// sinks only",
            spec.name
        ))),
    }
}

struct Limits {
    meta: bool,
    count: Option<u64>,
    follow: bool,
    idle: Option<Duration>,
    timeout: Duration,
}

enum Fail {
    Server(String),
    Stdout(std::io::Error),
}

fn print(out: &mut dyn Write, meta: Option<serde_json::Value>, payload: &[u8]) -> Result<(), Fail> {
    let r = match meta {
        None => out.write_all(payload),
        Some(m) => {
            // `{"partition":..,"event":<payload>}`: the payload is already JSON.
            let m = m.to_string();
            let head = m.strip_suffix('}').unwrap_or(&m);
            out.write_all(head.as_bytes())
                .and_then(|()| out.write_all(b",\"event\":"))
                .and_then(|()| out.write_all(payload))
                .and_then(|()| out.write_all(b"}"))
        }
    };
    r.and_then(|()| out.write_all(b"\n")).map_err(Fail::Stdout)
}

fn kafka(brokers: &str, topic: &str, lim: &Limits, out: &mut dyn Write) -> Result<u64, Fail> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let mut cfg = super::kafka::base_config(brokers, "flowsentry-tail");
    cfg.set(
        "group.id",
        format!("flowsentry-tail-{}", std::process::id()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = cfg
        .create()
        .map_err(|e| Fail::Server(format!("cannot create a Kafka consumer: {e}")))?;
    let md = consumer
        .fetch_metadata(Some(topic), lim.timeout)
        .map_err(|e| Fail::Server(format!("cannot read topic metadata: {e}")))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if parts.is_empty() {
        return Err(Fail::Server(format!("topic {topic} does not exist")));
    }
    // Where each partition ends now: without --follow, stop there.
    let mut end = std::collections::BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, lim.timeout)
            .map_err(|e| Fail::Server(format!("cannot read offsets of partition {p}: {e}")))?;
        if high > low {
            end.insert(p, high);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| Fail::Server(format!("cannot assign partition {p}: {e}")))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Fail::Server(format!("cannot assign partitions: {e}")))?;
    let mut n = 0u64;
    let mut last = Instant::now();
    loop {
        // Without --follow: at the end of every partition, and nothing more for a moment
        // (some brokers, tansu among them, report a high watermark that lags the last
        // record batch, so the watermark alone would stop too early).
        let settled = end.is_empty() && last.elapsed() >= SETTLE;
        if lim.count.is_some_and(|c| n >= c) || (!lim.follow && settled) {
            break;
        }
        let waited = last.elapsed();
        if (lim.follow && lim.idle.is_some_and(|i| waited >= i))
            || (!lim.follow && waited >= lim.timeout)
        {
            if !lim.follow {
                return Err(Fail::Server(format!(
                    "no new event for {:.1} s before reaching the end of the topic",
                    waited.as_secs_f64()
                )));
            }
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => return Err(Fail::Server(format!("fetch failed: {e}"))),
            Some(Ok(m)) => {
                last = Instant::now();
                if let Some(p) = m.payload() {
                    let meta = lim.meta.then(|| {
                        serde_json::json!({
                            "partition": m.partition(),
                            "offset": m.offset(),
                            "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        })
                    });
                    print(out, meta, p)?;
                    n += 1;
                }
                if let Some(&h) = end.get(&m.partition()) {
                    if m.offset() + 1 >= h {
                        end.remove(&m.partition());
                    }
                }
            }
        }
    }
    out.flush().map_err(Fail::Stdout)?;
    Ok(n)
}

fn redis(client_url: &str, stream: &str, lim: &Limits, out: &mut dyn Write) -> Result<u64, Fail> {
    use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
    let client = super::redis::client(client_url).map_err(Fail::Server)?;
    let mut con = client
        .get_connection_with_timeout(lim.timeout)
        .map_err(|e| Fail::Server(format!("cannot connect: {e}")))?;
    con.set_read_timeout(Some(lim.timeout + Duration::from_secs(2)))
        .map_err(|e| Fail::Server(format!("cannot set a timeout: {e}")))?;
    let mut n = 0u64;
    let mut from = "-".to_string();
    let payload = |id: &redis::streams::StreamId| -> Option<Vec<u8>> {
        match id.map.get("json") {
            Some(redis::Value::BulkString(b)) => Some(b.clone()),
            Some(redis::Value::SimpleString(s)) => Some(s.as_bytes().to_vec()),
            _ => None,
        }
    };
    let mut last_id = "0-0".to_string();
    // What the stream holds now.
    loop {
        if lim.count.is_some_and(|c| n >= c) {
            break;
        }
        let r: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .map_err(|e| Fail::Server(format!("XRANGE failed: {e}")))?;
        if r.ids.is_empty() {
            break;
        }
        for id in &r.ids {
            if lim.count.is_some_and(|c| n >= c) {
                break;
            }
            if let Some(p) = payload(id) {
                let meta = lim.meta.then(|| serde_json::json!({ "id": id.id }));
                print(out, meta, &p)?;
                n += 1;
            }
            last_id = id.id.clone();
        }
        from = format!("({last_id}");
    }
    if lim.follow {
        let mut last = Instant::now();
        while lim.count.is_none_or(|c| n < c) && lim.idle.is_none_or(|i| last.elapsed() < i) {
            let opts = StreamReadOptions::default().block(500).count(1000);
            let r: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg(&opts)
                .arg("STREAMS")
                .arg(stream)
                .arg(&last_id)
                .query(&mut con)
                .map_err(|e| Fail::Server(format!("XREAD failed: {e}")))?;
            for key in r.map(|r| r.keys).unwrap_or_default() {
                for id in &key.ids {
                    if let Some(p) = payload(id) {
                        let meta = lim.meta.then(|| serde_json::json!({ "id": id.id }));
                        print(out, meta, &p)?;
                        n += 1;
                        last = Instant::now();
                    }
                    last_id = id.id.clone();
                }
            }
            out.flush().map_err(Fail::Stdout)?;
        }
    }
    out.flush().map_err(Fail::Stdout)?;
    Ok(n)
}
