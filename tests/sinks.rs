//! Event sinks against real receivers on 127.0.0.1 (see `common/servers.rs`): Redis
//! (`redis-server`), syslog (`rsyslogd`, TCP and UDP) and Kafka (`tansu`). Each sink must
//! deliver exactly the events that the file output holds (compared by `seq` and by the
//! bytes of each line, read back with `flowsentry tail` or from rsyslog's output file);
//! an outage in the middle of a replay must lose nothing (every event arrives at least
//! once) and the counters must say what happened; with a tiny spill cap the drop counter
//! must equal the number of events missing at the receiver.
//!
//! Mid-replay outages: the capture is fed to `flowsentry replay -` through stdin in three
//! parts; the receiver is stopped after the first part has reached it and restarted after
//! the second part has been written (events produced meanwhile must queue and spill).
//! tansu keeps topics in memory only, so its outage is a network cut by a proxy in front
//! of it rather than a restart.

#[path = "common/events.rs"]
mod events;
#[path = "common/servers.rs"]
mod servers;

use events::{assert_same, by_seq};
use serde_json::Value;
use servers::{line_count, poll};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_flowsentry");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pcaps")
        .join(name)
}

/// A 48-hour simulated hub: ~5,300 flow events spread evenly over a 2.8 MB capture, so
/// events keep coming while the capture is fed in parts.
fn steady_capture(dir: &Path) -> PathBuf {
    let out = dir.join("sim");
    let st = Command::new(BIN)
        .args([
            "simulate",
            "--scenario",
            "fixture-benign-hub",
            "--duration",
            "48h",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run simulate");
    assert!(
        st.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    out.join("capture.pcap")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The newline-terminated lines of a file a receiver may still be appending to (a line
/// it is writing at the moment of the read is left for the next read).
fn read_complete(p: &Path) -> String {
    let mut text = read(p);
    text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
    text
}

/// The last `stats` event of a file and its `sinks` list.
fn final_sinks(events: &str) -> Vec<Value> {
    let last = events.lines().last().expect("events");
    let v: Value = serde_json::from_str(last).expect("stats json");
    assert_eq!(v["event_type"], "stats", "last line is not stats: {last}");
    v["stats"]["sinks"].as_array().cloned().unwrap_or_default()
}

/// `flowsentry tail URL` (everything the server holds now).
fn tail(url: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("tail").arg(url).args(extra);
    events::run_tail(cmd, url)
}

/// A replay reading the capture from stdin, fed part by part.
struct Staged {
    child: Child,
    stdin: Option<ChildStdin>,
    data: Vec<u8>,
    fed: usize,
    out: PathBuf,
}

impl Staged {
    fn start(pcap: &Path, out: &Path, args: &[&str]) -> Staged {
        let child = Command::new(BIN)
            .args([
                "replay",
                "-",
                "--no-progress",
                "--no-detect",
                "--workers",
                "0",
                "--sensor-id",
                "test-sensor",
                "--out",
            ])
            .arg(out)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start replay");
        let mut s = Staged {
            child,
            stdin: None,
            data: std::fs::read(pcap).expect("read capture"),
            fed: 0,
            out: out.to_path_buf(),
        };
        s.stdin = s.child.stdin.take();
        s
    }

    /// Feeds up to `frac` of the capture.
    fn feed_to(&mut self, frac: f64) {
        let end = ((self.data.len() as f64 * frac) as usize).min(self.data.len());
        if let Some(w) = self.stdin.as_mut() {
            w.write_all(&self.data[self.fed..end]).expect("feed replay");
            w.flush().expect("flush");
        }
        self.fed = end;
    }

    /// Events written to the file output so far (its buffer lags by at most 64 KiB).
    fn written(&self) -> usize {
        line_count(&self.out)
    }

    /// Feeds the rest, closes stdin, waits; returns (exit code, stderr).
    fn finish(mut self) -> (i32, String) {
        self.feed_to(1.0);
        drop(self.stdin.take());
        let out = self.child.wait_with_output().expect("wait replay");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn replay_file(pcap: &Path, out: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN)
        .arg("replay")
        .arg(pcap)
        .args(["--no-progress", "--sensor-id", "test-sensor", "--out"])
        .arg(out)
        .args(args)
        .output()
        .expect("run replay");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("no counter {k} in {v}"))
}

#[test]
fn redis_sink_delivers_what_the_file_sink_writes() {
    let Some(redis) = servers::redis() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("events.jsonl");
    let url = format!("redis://127.0.0.1:{}/flowsentry", redis.port);
    let spill = tmp.path().join("spill").display().to_string();
    let inv = fixture("fixture-mirai.inventory.toml")
        .display()
        .to_string();
    let (code, err) = replay_file(
        &fixture("fixture-mirai.pcap"),
        &out,
        &["--inventory", &inv, "--sink", &url, "--spill-dir", &spill],
    );
    assert_eq!(code, 0, "{err}");
    let text = read(&out);
    let file = by_seq(&text, "file");
    assert!(file.len() > 4000, "{} events", file.len());
    let n = assert_same(&file, &tail(&url, &[]), "redis");
    assert_eq!(n, file.len(), "no duplicates without an outage");
    let sinks = final_sinks(&text);
    assert_eq!(sinks.len(), 1);
    let s = &sinks[0];
    // The stats event counts every event before it.
    assert_eq!(u(s, "delivered"), file.len() as u64 - 1, "{s}");
    assert_eq!(
        u(s, "failed") + u(s, "dropped_total") + u(s, "spill_events") + u(s, "queued"),
        0,
        "{s}"
    );
    assert!(err.contains(&format!("{} delivered", file.len())), "{err}");
}

#[test]
fn kafka_sink_delivers_what_the_file_sink_writes_one_partition_per_device() {
    let Some(kafka) = servers::tansu("flowsentry-events", None) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("events.jsonl");
    let url = format!("kafka://127.0.0.1:{}/flowsentry-events", kafka.port);
    let spill = tmp.path().join("spill").display().to_string();
    let inv = fixture("fixture-mirai.inventory.toml")
        .display()
        .to_string();
    let (code, err) = replay_file(
        &fixture("fixture-mirai.pcap"),
        &out,
        &["--inventory", &inv, "--sink", &url, "--spill-dir", &spill],
    );
    assert_eq!(code, 0, "{err}");
    let text = read(&out);
    let file = by_seq(&text, "file");
    let got = tail(&url, &["--with-meta"]);
    let mut events = String::new();
    // key -> partition; (partition) -> seqs in offset order
    let mut part_of: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_part: BTreeMap<i64, Vec<(i64, u64, String)>> = BTreeMap::new();
    // Event types keyed by the inventory camera's device id.
    let mut cam_types: BTreeMap<String, u64> = BTreeMap::new();
    for l in got.lines() {
        // `{"key":..,"offset":..,"partition":..,"event":<the event as stored>}`
        let at = l.find(",\"event\":").expect("event field");
        let v: Value =
            serde_json::from_str(&format!("{}}}", &l[..at])).expect("tail --with-meta json");
        let raw = &l[at + 9..l.len() - 1];
        let (p, o) = (
            v["partition"].as_i64().expect("partition"),
            v["offset"].as_i64().expect("offset"),
        );
        let key = v["key"].as_str().expect("key").to_string();
        let prev = part_of.insert(key.clone(), p);
        assert!(
            prev.is_none_or(|q| q == p),
            "key {key} in partitions {prev:?} and {p}"
        );
        let ev: Value = serde_json::from_str(raw).expect("event json");
        if key == "test-sensor/cam-01" {
            let t = ev["event_type"].as_str().unwrap_or("").to_string();
            *cam_types.entry(t).or_insert(0) += 1;
        }
        by_part
            .entry(p)
            .or_default()
            .push((o, ev["seq"].as_u64().expect("seq"), key));
        events.push_str(raw);
        events.push('\n');
    }
    assert_same(&file, &events, "kafka");
    // Keys: `<sensor_id>/<device id>` for anomalies and for the flows of a scored device
    // (so the camera's flows and alerts share a partition), the originator for the rest.
    assert!(
        cam_types.get("flow").is_some_and(|&n| n > 100)
            && cam_types.get("anomaly").is_some_and(|&n| n > 0),
        "the camera's flows and anomalies are keyed by its device id: {cam_types:?}"
    );
    let anomalies: Vec<&String> = file
        .values()
        .filter(|l| l.contains("\"event_type\":\"anomaly\""))
        .collect();
    assert!(!anomalies.is_empty(), "the Mirai fixture raises anomalies");
    assert!(
        part_of.keys().all(|k| k.starts_with("test-sensor/")),
        "{:?}",
        part_of.keys().take(5).collect::<Vec<_>>()
    );
    // Within a partition, offsets follow seq: one device's events stay in order.
    for (p, mut rows) in by_part {
        rows.sort();
        assert!(
            rows.windows(2).all(|w| w[0].1 < w[1].1),
            "partition {p}: seq not increasing with offset"
        );
    }
    let s = &final_sinks(&text)[0];
    assert_eq!(u(s, "delivered"), file.len() as u64 - 1, "{s}");
    assert_eq!(u(s, "failed"), 0, "{s}");
}

#[test]
fn syslog_sinks_deliver_what_the_file_sink_writes() {
    let Some(rs) = servers::rsyslog() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("events.jsonl");
    let tcp = format!("syslog+tcp://127.0.0.1:{}", rs.port);
    let udp = format!("syslog+udp://127.0.0.1:{}", rs.port2);
    let spill = tmp.path().join("spill").display().to_string();
    let (code, err) = replay_file(
        &fixture("fixture-exfil-beacon.pcap"),
        &out,
        &["--sink", &tcp, "--sink", &udp, "--spill-dir", &spill],
    );
    assert_eq!(code, 0, "{err}");
    let text = read(&out);
    let file = by_seq(&text, "file");
    let n = file.len();
    let (tcp_log, udp_log) = (rs.path("tcp.log"), rs.path("udp.log"));
    assert!(
        poll(10.0, || line_count(&tcp_log) >= n
            && line_count(&udp_log) >= n),
        "rsyslog wrote {} / {} of {n} lines",
        line_count(&tcp_log),
        line_count(&udp_log)
    );
    assert_same(&file, &read(&tcp_log), "syslog+tcp");
    assert_same(&file, &read(&udp_log), "syslog+udp");
    let sinks = final_sinks(&text);
    assert_eq!(u(&sinks[0], "delivered"), n as u64 - 1);
    // UDP cannot confirm anything: counted as sent, never as delivered.
    assert_eq!(u(&sinks[1], "delivered"), 0);
    assert_eq!(u(&sinks[1], "sent_unconfirmed"), n as u64 - 1);
    assert_eq!(sinks[1]["confirms"], false);
}

#[test]
fn redis_outage_mid_replay_loses_nothing() {
    let Some(mut redis) = servers::redis() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = steady_capture(tmp.path());
    let out = tmp.path().join("events.jsonl");
    let url = format!("redis://127.0.0.1:{}/flowsentry", redis.port);
    let spill = tmp.path().join("spill").display().to_string();
    let xlen = |u: &str| tail(u, &[]).lines().count();
    let mut r = Staged::start(
        &pcap,
        &out,
        &[
            "--sink",
            &url,
            "--spill-dir",
            &spill,
            "--sink-queue",
            "100",
            "--sink-drain-secs",
            "30",
        ],
    );
    r.feed_to(0.33);
    assert!(
        poll(20.0, || xlen(&url) > 200),
        "events reach Redis before the outage"
    );
    redis.stop();
    let at_stop = r.written();
    r.feed_to(0.66);
    assert!(
        poll(20.0, || r.written() > at_stop + 500),
        "events keep coming during the outage"
    );
    redis.restart();
    let (code, err) = r.finish();
    assert_eq!(code, 0, "{err}");
    let text = read(&out);
    let file = by_seq(&text, "file");
    assert_same(&file, &tail(&url, &[]), "redis after outage");
    let s = &final_sinks(&text)[0];
    assert!(u(s, "spilled") > 0, "the outage filled the queue: {s}");
    assert_eq!(u(s, "dropped_total"), 0, "{s}");
    assert_eq!(
        u(s, "spill_events") + u(s, "queued") + u(s, "in_flight"),
        0,
        "drained: {s}"
    );
    assert!(u(s, "delivered") >= file.len() as u64 - 1, "{s}");
    assert!(!err.contains("not delivered yet"), "{err}");
}

#[test]
fn syslog_tcp_outage_mid_replay_loses_nothing() {
    let Some(mut rs) = servers::rsyslog() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = steady_capture(tmp.path());
    let out = tmp.path().join("events.jsonl");
    let url = format!("syslog+tcp://127.0.0.1:{}", rs.port);
    let spill = tmp.path().join("spill").display().to_string();
    let log = rs.path("tcp.log");
    let mut r = Staged::start(
        &pcap,
        &out,
        &[
            "--sink",
            &url,
            "--spill-dir",
            &spill,
            "--sink-queue",
            "100",
            "--sink-drain-secs",
            "30",
        ],
    );
    r.feed_to(0.33);
    assert!(
        poll(20.0, || line_count(&log) > 200),
        "events reach rsyslog before the outage"
    );
    rs.stop();
    let at_stop = r.written();
    r.feed_to(0.66);
    assert!(
        poll(20.0, || r.written() > at_stop + 500),
        "events keep coming during the outage"
    );
    rs.restart();
    let (code, err) = r.finish();
    assert_eq!(code, 0, "{err}");
    let text = read(&out);
    let file = by_seq(&text, "file");
    assert!(
        poll(10.0, || by_seq(&read_complete(&log), "rsyslog").len()
            >= file.len()),
        "rsyslog has {} distinct of {} events",
        by_seq(&read_complete(&log), "rsyslog").len(),
        file.len()
    );
    assert_same(&file, &read_complete(&log), "syslog+tcp after outage");
    let s = &final_sinks(&text)[0];
    assert!(
        u(s, "failed") + u(s, "spilled") > 0,
        "the outage shows in the counters: {s}"
    );
    assert!(
        u(s, "retried") > 0,
        "uncertain events were written again: {s}"
    );
    assert_eq!(u(s, "dropped_total"), 0, "{s}");
}

/// Starts tansu behind a proxy that it advertises, so every client connection (metadata,
/// produce, fetch) goes through the proxy.
fn kafka_behind_proxy(topic: &str) -> Option<(servers::Server, servers::Proxy)> {
    let upstream = Arc::new(Mutex::new(0u16));
    let proxy = servers::Proxy::start(upstream.clone());
    let kafka = servers::tansu(topic, Some(proxy.port))?;
    *upstream.lock().expect("upstream") = kafka.port;
    Some((kafka, proxy))
}

#[test]
fn kafka_outage_mid_replay_loses_nothing() {
    let Some((_kafka, proxy)) = kafka_behind_proxy("events") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = steady_capture(tmp.path());
    let out = tmp.path().join("events.jsonl");
    let url = format!(
        "kafka://127.0.0.1:{}/events?message_timeout_ms=1000",
        proxy.port
    );
    let base = format!("kafka://127.0.0.1:{}/events", proxy.port);
    let spill = tmp.path().join("spill").display().to_string();
    let mut r = Staged::start(
        &pcap,
        &out,
        &[
            "--sink",
            &url,
            "--spill-dir",
            &spill,
            "--sink-queue",
            "100",
            "--sink-drain-secs",
            "30",
        ],
    );
    r.feed_to(0.33);
    assert!(
        poll(20.0, || tail(&base, &[]).lines().count() > 200),
        "events reach the broker before the outage"
    );
    proxy.cut();
    let at_cut = r.written();
    r.feed_to(0.66);
    assert!(
        poll(20.0, || r.written() > at_cut + 500),
        "events keep coming during the outage"
    );
    proxy.restore();
    let (code, err) = r.finish();
    assert_eq!(code, 0, "{err}");
    let text = read(&out);
    let file = by_seq(&text, "file");
    assert_same(&file, &tail(&base, &[]), "kafka after outage");
    let s = &final_sinks(&text)[0];
    assert!(u(s, "spilled") > 0, "{s}");
    assert_eq!(
        u(s, "dropped_total") + u(s, "spill_events") + u(s, "queued"),
        0,
        "{s}"
    );
}

/// librdkafka's default producer context drops delivery reports, so events sent into a
/// broken connection would look delivered. Ours must count them as failed, keep them in
/// the spill, and send them first on the next run.
#[test]
fn kafka_delivery_failures_are_counted_and_kept_for_the_next_run() {
    let Some((_kafka, proxy)) = kafka_behind_proxy("events") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = steady_capture(tmp.path());
    let out = tmp.path().join("events.jsonl");
    let url = format!(
        "kafka://127.0.0.1:{}/events?message_timeout_ms=1000",
        proxy.port
    );
    let base = format!("kafka://127.0.0.1:{}/events", proxy.port);
    let spill = tmp.path().join("spill").display().to_string();
    let mut r = Staged::start(
        &pcap,
        &out,
        &[
            "--sink",
            &url,
            "--spill-dir",
            &spill,
            "--sink-drain-secs",
            "3",
        ],
    );
    r.feed_to(0.33);
    assert!(
        poll(20.0, || tail(&base, &[]).lines().count() > 200),
        "events reach the broker first"
    );
    // The broker becomes unreachable for the rest of the run.
    proxy.cut();
    let (code, err) = r.finish();
    assert_eq!(code, 0, "{err}");
    let text = read(&out);
    let file = by_seq(&text, "file");
    let s = &final_sinks(&text)[0];
    proxy.restore();
    let stored = by_seq(&tail(&base, &[]), "kafka");
    let delivered = u(s, "delivered");
    assert!(u(s, "failed") > 0 || u(s, "spilled") > 0, "{s}");
    // Never more delivered than arrived; what did not arrive is still held.
    assert!(
        delivered <= stored.len() as u64,
        "{delivered} counted delivered, {} on the broker: {s}",
        stored.len()
    );
    assert!(
        (stored.len() as u64) < file.len() as u64 - 1,
        "the cut lost events at the broker"
    );
    let held = u(s, "spill_events") + u(s, "queued") + u(s, "in_flight");
    assert_eq!(
        delivered + held,
        file.len() as u64 - 1,
        "every event is delivered or held: {s}"
    );
    assert!(err.contains("not delivered yet"), "{err}");
    // The next run, with the broker back, sends the leftovers first.
    let out2 = tmp.path().join("events2.jsonl");
    let (code, err) = replay_file(
        &fixture("fixture-benign-plc.pcap"),
        &out2,
        &["--no-detect", "--sink", &url, "--spill-dir", &spill],
    );
    assert_eq!(code, 0, "{err}");
    let s2 = &final_sinks(&read(&out2))[0];
    assert!(u(s2, "recovered") > 0, "{s2}");
    let stored = by_seq(&tail(&base, &[]), "kafka");
    let missing: Vec<&u64> = file.keys().filter(|q| !stored.contains_key(q)).collect();
    assert!(
        missing.is_empty(),
        "after the second run {} events of the first are still missing",
        missing.len()
    );
}

#[test]
fn tiny_spill_cap_drops_exactly_the_missing_events() {
    let Some(mut redis) = servers::redis() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = steady_capture(tmp.path());
    let out = tmp.path().join("events.jsonl");
    let url = format!("redis://127.0.0.1:{}/flowsentry", redis.port);
    let spill = tmp.path().join("spill").display().to_string();
    let mut r = Staged::start(
        &pcap,
        &out,
        &[
            "--sink",
            &url,
            "--spill-dir",
            &spill,
            "--sink-queue",
            "20",
            "--spill-max-bytes",
            "16384",
            "--sink-drain-secs",
            "30",
        ],
    );
    r.feed_to(0.33);
    // Most of this burst is dropped already (the cap is tiny): wait for the first ones.
    assert!(poll(20.0, || tail(&url, &[]).lines().count() > 10));
    redis.stop();
    let at_stop = r.written();
    r.feed_to(0.66);
    assert!(poll(20.0, || r.written() > at_stop + 500));
    redis.restart();
    let (code, err) = r.finish();
    assert_eq!(code, 5, "dropped events give exit code 5: {err}");
    let text = read(&out);
    let file = by_seq(&text, "file");
    let got = by_seq(&tail(&url, &[]), "redis");
    let missing = file.keys().filter(|q| !got.contains_key(q)).count() as u64;
    let s = &final_sinks(&text)[0];
    assert!(missing > 100, "the cap dropped events: {missing}");
    assert_eq!(
        u(s, "dropped_total"),
        missing,
        "drop counter = events missing: {s}"
    );
    assert_eq!(s["dropped"]["spill_full"].as_u64(), Some(missing), "{s}");
    assert!(u(s, "spill_bytes") <= 16384, "{s}");
    assert!(err.contains(&format!("{missing} dropped")), "{err}");
}

#[test]
fn spill_left_by_one_run_is_sent_first_and_in_order_by_the_next() {
    let Some(redis) = servers::redis() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let spill = tmp.path().join("spill").display().to_string();
    // The same URL, nobody listening yet: a free port taken by nothing.
    let url = format!("redis://127.0.0.1:{}/flowsentry", redis.port);
    let down = servers::free_port();
    let url_down = format!("redis://127.0.0.1:{down}/flowsentry");
    let out1 = tmp.path().join("run1.jsonl");
    let (code, err) = replay_file(
        &fixture("fixture-benign-plug.pcap"),
        &out1,
        &[
            "--no-detect",
            "--sink",
            &url_down,
            "--spill-dir",
            &spill,
            "--sink-drain-secs",
            "0.5",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let run1 = by_seq(&read(&out1), "run 1");
    assert!(
        err.contains(&format!("{} not delivered yet", run1.len())),
        "{err}"
    );
    // Run 2 reaches the receiver under the same URL through a proxy on that port.
    let upstream = Arc::new(Mutex::new(redis.port));
    let _proxy = servers::Proxy::start_on(down, upstream);
    let out2 = tmp.path().join("run2.jsonl");
    let (code, err) = replay_file(
        &fixture("fixture-benign-thermostat.pcap"),
        &out2,
        &["--no-detect", "--sink", &url_down, "--spill-dir", &spill],
    );
    assert_eq!(code, 0, "{err}");
    let run2 = by_seq(&read(&out2), "run 2");
    let order: Vec<(String, u64)> = tail(&url, &[])
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (
                v["timestamp"].as_str().unwrap_or("").to_string(),
                v["seq"].as_u64().expect("seq"),
            )
        })
        .collect();
    let seqs: Vec<u64> = order.iter().map(|x| x.1).collect();
    let want: Vec<u64> = run1.keys().chain(run2.keys()).copied().collect();
    assert_eq!(seqs, want, "run 1's events first, in order, then run 2's");
    let s2 = &final_sinks(&read(&out2))[0];
    assert_eq!(u(s2, "recovered"), run1.len() as u64, "{s2}");
    let left: Vec<_> = walk(Path::new(&spill))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    assert!(left.is_empty(), "spill segments left: {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p);
            }
        }
    }
    v
}

#[test]
fn sink_config_tables_are_checked_and_unknown_options_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[sensor]\nid = \"site-a\"\n[sinks]\nqueue_events = 1000\n[[sink]]\nurl = \"kafka://127.0.0.1:9092/events\"\ncompression = \"gzip\"\n[[sink]]\nurl = \"redis://127.0.0.1:6379/events\"\nmaxlen = 5000\n",
    )
    .expect("write");
    let o = Command::new(BIN)
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (body, needle) in [
        (
            "[[sink]]\nurl = \"redis://127.0.0.1:6379/e\"\ncompression = \"lz4\"\n",
            "compression",
        ),
        (
            "[[sink]]\nurl = \"kafka://127.0.0.1:9092/e\"\nlingr_ms = 3\n",
            "lingr_ms",
        ),
        ("[[sink]]\nurl = \"ftp://x:1/y\"\n", "unknown scheme"),
        ("[sensor]\nid = \"has space\"\n", "sensor.id"),
    ] {
        std::fs::write(&cfg, body).expect("write");
        let o = Command::new(BIN)
            .args(["config", "check"])
            .arg(&cfg)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(2), "{body}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(needle), "{body}: {e}");
    }
}

/// A tmpfs of `kib` KiB mounted on a fresh directory, unmounted on drop: a disk that
/// really fills up. Root only; `None` after a note (a panic under `CI=true`) otherwise.
struct TinyFs {
    dir: tempfile::TempDir,
}

impl TinyFs {
    fn mount(kib: u32) -> Option<TinyFs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .output();
        match st {
            Ok(o) if o.status.success() => Some(TinyFs { dir }),
            other => {
                let why = format!(
                    "cannot mount a tmpfs (needs root): {:?}",
                    other.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                );
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("CI=true but {why}");
                }
                eprintln!("note: skipping the full-disk spill test: {why}");
                None
            }
        }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A spill whose close-time write fails on a full disk still records how far delivery got:
/// the records delivered before are not sent again by the next run (before, `sync`
/// returned at the failed write without writing the cursor, so they were).
#[test]
fn full_disk_at_close_keeps_the_delivery_cursor() {
    use flowsentry::sink::spill::Spill;
    use flowsentry::sink::{EventKind, Record};
    let Some(fs) = TinyFs::mount(256) else {
        return;
    };
    let dir = fs.dir.path().join("spill");
    let rec = |seq: u64| Record {
        seq,
        kind: EventKind::from_code(0),
        key: "sensor/dev".into(),
        line: format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(1000))
            .into_bytes()
            .into(),
    };
    let (mut sp, _) = Spill::open(&dir, 1 << 30).expect("open spill");
    for seq in 0..50 {
        sp.append(&rec(seq)).expect("append");
    }
    sp.sync().expect("first sync");
    // All 50 are read and the first 30 delivered (committed), not synced yet.
    let mut got = Vec::new();
    sp.read(100, &mut got).expect("read");
    assert_eq!(got.len(), 50);
    sp.commit(got[29].1);
    // Fill the disk, then free two pages: room for the cursor, not for 40 KB of appends.
    let filler = fs.dir.path().join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let page = [0u8; 4096];
    let mut len = 0u64;
    while f.write_all(&page).is_ok() {
        len += 4096;
    }
    f.set_len(len.saturating_sub(8192))
        .expect("truncate filler");
    drop(f);
    for seq in 50..90 {
        sp.append(&rec(seq)).expect("buffered append");
    }
    let err = sp
        .sync()
        .expect_err("the tail cannot be written on a full disk");
    assert!(err.to_string().contains("No space left"), "{err}");
    let lost = sp.take_loss().map(|(n, _)| n);
    assert_eq!(lost, Some(40), "the unwritten appends are reported lost");
    drop(sp);
    // The next run sends exactly the 20 undelivered records that reached the disk.
    let (mut again, _) = Spill::open(&dir, 1 << 30).expect("reopen spill");
    let mut resent = Vec::new();
    again.read(100, &mut resent).expect("read after reopen");
    let seqs: Vec<u64> = resent.iter().map(|(r, _)| r.seq).collect();
    assert_eq!(
        seqs,
        (30..50).collect::<Vec<u64>>(),
        "what the next run sends"
    );
}

/// The receiver is down for the whole run and the spill directory is on a disk that
/// fills up (a 128 KiB tmpfs, far below the spill cap): the replay must not panic, the
/// file output must still hold every flow, the events the full disk refused must be
/// counted as `spill_error` drops, the accounting must add up to every event offered,
/// the run must exit 5 (events dropped) and name the cause.
#[test]
fn full_disk_under_the_spill_is_counted_not_a_crash() {
    let Some(fs) = TinyFs::mount(128) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pcap = fixture("fixture-mirai.pcap");
    let plain = tmp.path().join("plain.jsonl");
    let (code, err) = replay_file(&pcap, &plain, &["--no-detect"]);
    assert_eq!(code, 0, "{err}");
    let out = tmp.path().join("events.jsonl");
    // Redis is down for the first run (every event goes to the queue, then the spill) and
    // up for the second (the spill subdirectory is named after the sink's URL).
    let Some(mut redis) = servers::redis() else {
        return;
    };
    redis.stop();
    let url = format!("redis://127.0.0.1:{}/flowsentry", redis.port);
    let spill = fs.dir.path().display().to_string();
    let (code, err) = replay_file(
        &pcap,
        &out,
        &[
            "--no-detect",
            "--sink",
            &url,
            "--spill-dir",
            &spill,
            "--sink-queue",
            "16",
            "--sink-drain-secs",
            "1",
        ],
    );
    assert_eq!(code, 5, "dropped events give exit code 5: {err}");
    assert!(
        err.contains("spill") && err.contains("No space left"),
        "the cause is named: {err}"
    );
    let flows = |t: &str| {
        t.lines()
            .filter(|l| l.contains("\"event_type\":\"flow\""))
            .count()
    };
    let text = read(&out);
    let n_flows = flows(&read(&plain));
    assert!(n_flows > 4000, "{n_flows} flows");
    assert_eq!(flows(&text), n_flows, "flows lost from the file output");
    let file = by_seq(&text, "file");
    let s = &final_sinks(&text)[0];
    assert_eq!(u(s, "delivered"), 0, "{s}");
    assert_eq!(s["dropped"]["spill_full"].as_u64(), Some(0), "{s}");
    let dropped = s["dropped"]["spill_error"].as_u64().unwrap_or(0);
    assert!(dropped > 1000, "the full disk refused events: {s}");
    assert_eq!(u(s, "dropped_total"), dropped, "{s}");
    // Every event before the final stats event is either still held (spill, queue, in
    // flight) or counted as dropped.
    assert_eq!(
        u(s, "spill_events") + u(s, "queued") + u(s, "in_flight") + dropped,
        file.len() as u64 - 1,
        "accounting: {s}"
    );
    assert!(
        s["last_spill_error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "the stats name the spill's cause: {s}"
    );
    let held = u(s, "spill_events");
    assert!(held > 0, "the spill holds what fitted: {s}");

    // The next run, with the receiver up, sends what the full disk kept: intact records,
    // each byte-identical to the event of the first run with that seq.
    redis.restart();
    let out2 = tmp.path().join("events2.jsonl");
    let (code, err) = replay_file(
        &fixture("fixture-benign-hub.pcap"),
        &out2,
        &[
            "--no-detect",
            "--sink",
            &url,
            "--spill-dir",
            &spill,
            "--sink-drain-secs",
            "30",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let text2 = read(&out2);
    let s2 = &final_sinks(&text2)[0];
    let recovered = u(s2, "recovered");
    assert!(
        recovered >= held && recovered <= held + u(s, "queued") + u(s, "in_flight"),
        "recovered {recovered} of {held} held (+ queued/in flight at close): {s2}"
    );
    let got = tail(&url, &[]);
    assert_eq!(
        got.lines().count() as u64,
        recovered + text2.lines().count() as u64,
        "Redis holds the recovered events and the second run's"
    );
    let first_run: Vec<&str> = got.lines().take(recovered as usize).collect();
    for l in first_run {
        let v: Value = serde_json::from_str(l).expect("json");
        let seq = v["seq"].as_u64().expect("seq");
        assert_eq!(
            file.get(&seq).map(String::as_str),
            Some(l),
            "recovered event seq {seq} differs from the first run's"
        );
    }
}
