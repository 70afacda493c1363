//! Sink throughput on loopback: the same event lines (the Mirai fixture's events, repeated
//! to `SINK_BENCH_EVENTS`, default 100,000) offered to each sink, timed from the first
//! offer until the sink reports every event delivered (its own acknowledgements), next to
//! the same events written to a file sink (flushed and fsynced) in the same run. Receivers
//! are started on 127.0.0.1 like the tests do (redis-server, rsyslogd, tansu); a missing
//! one is skipped with a note. Three repetitions; the median is reported, as events/s and
//! as a ratio to the file sink. Results go in docs/benchmarks.md.
//!
//! `cargo bench --bench sinks`. Without `--bench` (as `cargo test --all-targets` runs it)
//! it only pushes 200 events through a file sink, untimed, and starts no server.

#[path = "../tests/common/servers.rs"]
mod servers;

use flowsentry::sink::{EventKind, EventLine, Sink, SinkSettings, SinkTable, SinksSection};
use std::path::Path;
use std::time::{Duration, Instant};

fn events() -> Vec<(Vec<u8>, String, EventKind)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowsentry"))
        .args([
            "replay",
            "--no-progress",
            "--sensor-id",
            "bench",
            "--inventory",
        ])
        .arg(root.join("fixtures/pcaps/fixture-mirai.inventory.toml"))
        .arg(root.join("fixtures/pcaps/fixture-mirai.pcap"))
        .output()
        .expect("run flowsentry replay");
    assert!(out.status.success(), "replay failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let key = format!("bench/{}", v["src_ip"].as_str().unwrap_or("sensor"));
            (l.as_bytes().to_vec(), key, EventKind::of_line(l.as_bytes()))
        })
        .collect()
}

/// Offers `n` events to `sink` and waits for all to be delivered; returns (seconds until
/// delivered, seconds the offers took on the writer's side).
fn run(
    sink: &mut dyn Sink,
    lines: &[(Vec<u8>, String, EventKind)],
    n: usize,
) -> Option<(f64, f64)> {
    let t0 = Instant::now();
    for i in 0..n {
        let (line, key, kind) = &lines[i % lines.len()];
        let ev = EventLine::new(line, key, i as u64 + 1, *kind);
        sink.offer(&ev).ok()?;
    }
    let offered = t0.elapsed().as_secs_f64();
    sink.drain(Instant::now() + Duration::from_secs(120)).ok()?;
    sink.close(Instant::now() + Duration::from_secs(5)).ok()?;
    let secs = t0.elapsed().as_secs_f64();
    let s = sink.stats();
    let done = s.delivered.max(s.sent_unconfirmed);
    if done != n as u64 {
        eprintln!("{}: only {done} of {n} delivered: {s:?}", s.sink);
        return None;
    }
    Some((secs, offered))
}

fn open(url: &str, spill: &Path, n: usize) -> Box<dyn Sink> {
    let section = SinksSection {
        queue_events: n,
        spill_dir: Some(spill.to_path_buf()),
        ..SinksSection::default()
    };
    let table = SinkTable {
        url: url.to_string(),
        ..SinkTable::default()
    };
    let mut v = SinkSettings::new("bench".into(), &section, &[table])
        .and_then(|s| s.open())
        .expect("open sink");
    v.remove(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        let lines = events();
        let tmp = tempfile::tempdir().expect("tempdir");
        let url = format!("file:{}", tmp.path().join("e.jsonl").display());
        let mut sink = open(&url, &tmp.path().join("spill"), 200);
        assert!(
            run(sink.as_mut(), &lines, 200).is_some(),
            "file sink smoke run"
        );
        println!("sinks bench smoke test: 200 events through a file sink (run `cargo bench --bench sinks` to measure)");
        return;
    }
    let n: usize = std::env::var("SINK_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let lines = events();
    let avg = lines.iter().map(|l| l.0.len()).sum::<usize>() / lines.len();
    println!(
        "sinks benchmark: {n} events, {} distinct lines of {avg} bytes on average",
        lines.len()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    // Redis in memory only (no append-only file): the tests use an fsync-always AOF, which
    // on this machine's disk makes the receiver, not the sink, the bottleneck.
    let redis = servers::redis_with(
        std::env::var("SINK_BENCH_REDIS_AOF")
            .as_deref()
            .unwrap_or("off"),
    );
    let rs = servers::rsyslog();
    let kafka = servers::tansu("bench", None);
    let mut targets: Vec<(&str, String)> = vec![("file", String::new())];
    if let Some(r) = &redis {
        targets.push((
            "redis (batch 1000)",
            format!("redis://127.0.0.1:{}/bench", r.port),
        ));
        targets.push((
            "redis, batch=5000",
            format!("redis://127.0.0.1:{}/bench?batch=5000", r.port),
        ));
    }
    if let Some(k) = &kafka {
        targets.push((
            "kafka (batch 5000)",
            format!("kafka://127.0.0.1:{}/bench", k.port),
        ));
        targets.push((
            "kafka, batch=1000",
            format!("kafka://127.0.0.1:{}/bench?batch=1000", k.port),
        ));
    }
    if let Some(r) = &rs {
        targets.push(("syslog+tcp", format!("syslog+tcp://127.0.0.1:{}", r.port)));
        targets.push(("syslog+udp", format!("syslog+udp://127.0.0.1:{}", r.port2)));
    }
    let mut results: Vec<(&str, Vec<f64>)> = targets.iter().map(|t| (t.0, Vec::new())).collect();
    let mut offers: Vec<Vec<f64>> = targets.iter().map(|_| Vec::new()).collect();
    for rep in 0..3 {
        for (i, (name, url)) in targets.iter().enumerate() {
            let spill = tmp.path().join(format!("spill-{rep}-{i}"));
            let url = if *name == "file" {
                format!(
                    "file:{}",
                    tmp.path().join(format!("events-{rep}.jsonl")).display()
                )
            } else {
                url.clone()
            };
            let mut sink = open(&url, &spill, n);
            if let Some((secs, offered)) = run(sink.as_mut(), &lines, n) {
                results[i].1.push(secs);
                offers[i].push(offered);
            }
        }
    }
    let file_rate = results
        .first()
        .filter(|r| !r.1.is_empty())
        .map(|r| n as f64 / median(r.1.clone()));
    println!("\n| sink | events/s (median of 3) | runs (s) | ratio to file | writer's offer time (s, median) |");
    println!("|---|---|---|---|---|");
    for (k, (name, secs)) in results.iter().enumerate() {
        if secs.is_empty() {
            println!("| {name} | skipped | | |");
            continue;
        }
        let rate = n as f64 / median(secs.clone());
        let runs: Vec<String> = secs.iter().map(|s| format!("{s:.3}")).collect();
        let ratio = file_rate
            .map(|f| format!("{:.3}", rate / f))
            .unwrap_or_default();
        let offer = median(offers[k].clone());
        println!(
            "| {name} | {rate:.0} | {} | {ratio} | {offer:.3} |",
            runs.join(", ")
        );
    }
}
