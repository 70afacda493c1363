//! The model file: `flowsentry train` is deterministic (same inputs and seed give a
//! byte-identical file, another seed a different one), `--calibration-confidence` only
//! raises thresholds and is recorded in the file, and every kind of damage to a model
//! file is a clear error naming the file, never a panic or a huge allocation.

mod common;

use flowsentry::model::{ModelBundle, ModelError};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(args: &[&str]) {
    let out = common::run(args, None);
    assert!(
        out.status.success(),
        "flowsentry {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Simulates a short training and calibration window (the `training` and `calibration`
/// scenarios cut to a few hours) and trains a model with `seed`; returns its path.
fn train(dir: &Path, seed: u64, tag: &str) -> PathBuf {
    train_with(dir, seed, tag, &[])
}

/// As [`train`], with `extra` arguments for `flowsentry train`.
fn train_with(dir: &Path, seed: u64, tag: &str, extra: &[&str]) -> PathBuf {
    let t = dir.join("training");
    let c = dir.join("calibration");
    if !t.join("capture.pcap").exists() {
        let ts = t.to_string_lossy().into_owned();
        let cs = c.to_string_lossy().into_owned();
        run(&[
            "simulate",
            "--scenario",
            "training",
            "--seed",
            "1",
            "--duration",
            "3h",
            "--out",
            &ts,
        ]);
        run(&[
            "simulate",
            "--scenario",
            "calibration",
            "--seed",
            "1",
            "--duration",
            "2h",
            "--out",
            &cs,
        ]);
    }
    let out = dir.join(format!("{tag}.fsm"));
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    let (train_pcap, inventory, calib_pcap) = (
        s(t.join("capture.pcap")),
        s(t.join("inventory.toml")),
        s(c.join("capture.pcap")),
    );
    let seed = seed.to_string();
    let file = s(out.clone());
    let mut args = vec![
        "train",
        "--pcap",
        &train_pcap,
        "--inventory",
        &inventory,
        "--calibrate",
        &calib_pcap,
        "--seed",
        &seed,
        "--trees",
        "50",
        "--out",
        &file,
    ];
    args.extend_from_slice(extra);
    run(&args);
    out
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn train_is_deterministic_and_damage_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let a = read(&train(dir.path(), 7, "a"));
    let b = read(&train(dir.path(), 7, "b"));
    let c = read(&train(dir.path(), 8, "c"));
    assert!(
        a == b,
        "two trainings with seed 7 gave different model files"
    );
    assert!(a != c, "seeds 7 and 8 gave the same model file");
    let good = ModelBundle::from_bytes(&a, "a.fsm").unwrap_or_else(|e| panic!("{e}"));
    assert!(!good.classes.is_empty(), "no class model trained");
    for m in good.classes.iter().chain(std::iter::once(&good.pooled)) {
        assert!(m.threshold > 0.0 && m.threshold <= 1.0, "{:?}", m.class);
        assert!(m.envelope_threshold >= flowsentry::detect::envelope::MIN_THRESHOLD);
    }

    let name = "site.fsm";
    let check =
        |bytes: &[u8], what: &str, ok: &dyn Fn(&ModelError) -> bool| match ModelBundle::from_bytes(
            bytes, name,
        ) {
            Ok(_) => panic!("{what}: a damaged model loaded"),
            Err(e) => {
                assert!(ok(&e), "{what}: unexpected error {e:?}");
                assert!(
                    e.to_string().contains(name),
                    "{what}: error does not name the file: {e}"
                );
            }
        };
    let mut v = a.clone();
    v[0] = b'X';
    check(&v, "magic", &|e| matches!(e, ModelError::Magic { .. }));
    let mut v = a.clone();
    v[8] = 1;
    v[9] = 0;
    check(&v, "format 1", &|e| {
        matches!(e, ModelError::Version { major: 1, .. })
    });
    let mut v = a.clone();
    v[12] ^= 0x7f;
    check(&v, "schema", &|e| matches!(e, ModelError::Schema { .. }));
    check(&a[..a.len() / 2], "truncated", &|e| {
        matches!(e, ModelError::Truncated { .. })
    });
    check(&a[..20], "truncated header", &|e| {
        matches!(e, ModelError::Truncated { .. })
    });
    check(&[], "empty", &|e| matches!(e, ModelError::Empty { .. }));
    let mut v = a.clone();
    v.extend_from_slice(b"appended");
    check(
        &v,
        "trailing bytes",
        &|e| matches!(e, ModelError::Corrupt { detail, .. } if detail.contains("8 bytes after")),
    );
    let mut v = a.clone();
    let last = v.len() - 1;
    v[last] ^= 0x01;
    check(&v, "flipped byte", &|e| {
        matches!(e, ModelError::Checksum { .. })
    });
    let mut v = a.clone();
    v[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    check(&v, "huge header length", &|e| {
        matches!(e, ModelError::Corrupt { .. })
    });
    // A corrupt length prefix inside the body, with a valid checksum: the first field is
    // the feature-name list; 0xfc announces a u32 length, here ~4e9 names. The decoder's
    // size limit must refuse it instead of allocating.
    let mut v = a.clone();
    let body = 44;
    v[body] = 0xfc;
    v[body + 1..body + 5].copy_from_slice(&0xf000_0000u32.to_le_bytes());
    let digest = <sha1::Sha1 as sha1::Digest>::digest(&v[body..]);
    v[24..44].copy_from_slice(&digest);
    check(&v, "length prefix", &|e| {
        matches!(e, ModelError::Corrupt { .. })
    });

    // The command line: exit code 2, a message naming the file, and no event written.
    // The model is decoded while the replay starts reading (inline and threaded paths).
    let bad = dir.path().join("bad.fsm");
    std::fs::write(&bad, &v).unwrap_or_else(|e| panic!("{e}"));
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pcaps/fixture-mirai.pcap");
    for workers in ["0", "1", "2"] {
        let out = Command::new(common::BIN)
            .arg("replay")
            .arg("--model")
            .arg(&bad)
            .arg(&pcap)
            .args(["--out", "-", "--workers", workers])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.status.code(), Some(2), "{workers} workers");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.fsm") && err.contains("corrupt"),
            "{workers} workers: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{workers} workers: events written before the model was refused"
        );
    }
    // An empty model file is refused too (it used to be taken for a build without a
    // built-in model: detection silently off and exit 0, even with `--fail-on`).
    let empty = dir.path().join("empty.fsm");
    std::fs::write(&empty, b"").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(common::BIN)
        .arg("replay")
        .arg("--model")
        .arg(&empty)
        .arg(&pcap)
        .args(["--out", "-", "--fail-on", "anomaly"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "empty model: {err}");
    assert!(err.contains("empty.fsm") && err.contains("empty"), "{err}");
    // `eval` refuses a bad model with the same exit code 2.
    let labels = pcap.with_extension("labels.jsonl");
    let out = Command::new(common::BIN)
        .arg("eval")
        .arg("--pcap")
        .arg(&pcap)
        .arg("--labels")
        .arg(&labels)
        .arg("--model")
        .arg(&bad)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "eval with a bad model: {err}");
    assert!(err.contains("bad.fsm"), "{err}");
}

#[test]
fn a_calibration_confidence_raises_every_threshold_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let load =
        |p: &Path| ModelBundle::from_bytes(&read(p), "m.fsm").unwrap_or_else(|e| panic!("{e}"));
    let plain = load(&train(dir.path(), 7, "plain"));
    let conf = load(&train_with(
        dir.path(),
        7,
        "conf",
        &["--calibration-confidence", "0.95"],
    ));
    assert_eq!(plain.meta.calibration_confidence, None);
    assert_eq!(conf.meta.calibration_confidence, Some(0.95));
    let all = |b: &ModelBundle| {
        let mut v = Vec::new();
        for m in b.classes.iter().chain(std::iter::once(&b.pooled)) {
            v.push((format!("{:?}", m.class), m.threshold, m.calibration_fpr));
            for t in &m.transports {
                v.push((
                    format!("{:?}/{:?}", m.class, t.transport),
                    t.threshold,
                    t.calibration_fpr,
                ));
            }
        }
        v
    };
    let (p, c) = (all(&plain), all(&conf));
    assert_eq!(p.len(), c.len(), "the same forests");
    let mut raised = 0;
    for ((name, pt, pf), (_, ct, cf)) in p.iter().zip(&c) {
        // Same forests (same seed and data): only the order statistic moves, upwards.
        assert!(ct >= pt, "{name}: threshold {ct} below the plain {pt}");
        assert!(
            cf <= pf,
            "{name}: calibration FPR {cf} above the plain {pf}"
        );
        raised += usize::from(ct > pt);
    }
    assert!(raised > 0, "no threshold moved: {c:?}");
    // Out of range: a usage error naming the option.
    let out = common::run(
        &[
            "train",
            "--pcap",
            "x.pcap",
            "--calibration-confidence",
            "1.5",
            "--out",
            "x.fsm",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--calibration-confidence"), "{err}");
}

/// The shipped model has per-transport forests (docs/detection.md, "Per transport"):
/// `scorer` picks them by IP protocol, falls back to the class-wide forest for ICMP, and
/// validation refuses a duplicated or out-of-range per-transport entry.
#[test]
fn per_transport_forests_are_chosen_by_protocol_and_validated() {
    use flowsentry::model::{Transport, BUILTIN_MODEL};
    let good = ModelBundle::from_bytes(BUILTIN_MODEL, "builtin").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        good.pooled.transports.is_empty(),
        "the pooled model (the global baseline) must stay one forest"
    );
    let i = good
        .classes
        .iter()
        .position(|m| m.transports.iter().any(|t| t.transport == Transport::Tcp))
        .unwrap_or_else(|| panic!("no class of the default model has a TCP forest"));
    let m = &good.classes[i];
    for t in &m.transports {
        assert!(t.threshold > 0.0 && t.threshold <= 1.0, "{:?}", t.transport);
        assert!(t.n_train >= 1_000 && t.n_calibration >= 1_000);
    }
    use flowsentry::device::ClassSource;
    let tcp = m.scorer(6, ClassSource::Inventory);
    assert_eq!(tcp.transport, Some(Transport::Tcp));
    assert!(std::ptr::eq(tcp.forest, &m.transports[0].forest));
    assert_eq!(tcp.threshold, m.transports[0].threshold);
    // An inferred device is scored by the class-wide forest whatever its transport.
    for source in [ClassSource::Inferred, ClassSource::Unknown] {
        let s = m.scorer(6, source);
        assert_eq!(s.transport, None);
        assert!(std::ptr::eq(s.forest, &m.forest));
    }
    let icmp = m.scorer(1, ClassSource::Inventory);
    assert_eq!(icmp.transport, None);
    assert!(std::ptr::eq(icmp.forest, &m.forest));
    assert_eq!(icmp.threshold, m.threshold);
    let has_udp = m.transports.iter().any(|t| t.transport == Transport::Udp);
    assert_eq!(
        m.scorer(17, ClassSource::Inventory).transport.is_some(),
        has_udp
    );

    let mut dup = good.clone();
    let first = dup.classes[i].transports[0].clone();
    dup.classes[i].transports.push(first);
    let e = dup
        .validate()
        .expect_err("a duplicated transport forest validated");
    assert!(e.contains("sorted and unique"), "{e}");
    let mut bad = good.clone();
    bad.classes[i].transports[0].threshold = 1.5;
    let e = bad.validate().expect_err("a threshold of 1.5 validated");
    assert!(e.contains("threshold"), "{e}");
    assert!(good.validate().is_ok());
}

/// `ModelBundle::validate` does not re-check forests because decoding one validates it
/// (`IsolationForest` deserialises through `from_parts`): a structurally broken forest in
/// otherwise well-formed bincode must fail to decode.
#[test]
fn decoding_a_broken_forest_is_an_error() {
    use flowsentry::forest::{IsolationForest, Tree};
    let cfg = bincode::config::standard();
    // Same field order as the forest's serialised form: n_features, psi, ranges, trees.
    // (The file's tree encoding stores child offsets, so a child that does not point
    // forward cannot even be written; these breaks can.)
    let encode = |root_rows: u32, right0: u32| {
        let tree = Tree {
            feature: vec![0, u32::MAX, u32::MAX],
            threshold: vec![0.5, 0.0, 0.0],
            left: vec![1, u32::MAX, u32::MAX],
            right: vec![right0, u32::MAX, u32::MAX],
            n_samples: vec![root_rows, 1, 1],
        };
        bincode::serde::encode_to_vec((1usize, 2usize, vec![(0f32, 1f32)], vec![tree]), cfg)
            .unwrap_or_else(|e| panic!("encode: {e}"))
    };
    let decode = |b: &[u8]| bincode::serde::decode_from_slice::<IsolationForest, _>(b, cfg);
    assert!(
        decode(&encode(2, 2)).is_ok(),
        "the well-formed forest did not decode"
    );
    let e = decode(&encode(3, 2)).expect_err("a root with 3 rows over children of 1 + 1 decoded");
    assert!(e.to_string().contains("children's sum"), "{e}");
    let e = decode(&encode(2, 7)).expect_err("a child beyond the last node decoded");
    assert!(e.to_string().contains("out of range"), "{e}");
    // A truncated tree inside well-formed bincode (its byte-string length shortened):
    // the error names the tree encoding rather than panicking.
    let good = encode(2, 2);
    let mut cut = good.clone();
    let tree_len_at = good.len() - 1 - 33; // 1-byte length prefix before a 33-byte tree
    assert_eq!(
        good[tree_len_at], 33,
        "unexpected layout of the encoded forest"
    );
    cut[tree_len_at] = 32;
    cut.pop();
    let e = decode(&cut).expect_err("a truncated tree decoded");
    assert!(e.to_string().contains("isolation tree"), "{e}");
}
