//! Inventory, class names, profiles, inference and resolver tests.

use super::*;
use crate::features::tests::{push, rec, v4};
use crate::packet::proto;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const INV: &str = r#"
[[device]]
name = "cam-01"
class = "camera"
mac = "02:00:5e:10:00:15"
ip = "192.168.10.21"

[[device]]
name = "plc-01"
class = "plc"
ip = "192.168.20.10"

[[device]]
name = "plugs"
class = "plug"
cidr = "192.168.10.0/24"

[[device]]
name = "plug-corner"
class = "plug"
cidr = "192.168.10.128/25"

[[device]]
name = "hubs6"
class = "hub"
cidr = "fd00:1::/64"
"#;

fn ip(s: &str) -> Addr {
    s.parse::<std::net::IpAddr>()
        .map(Addr::from)
        .unwrap_or_default()
}

#[test]
fn class_names_round_trip() {
    for c in DeviceClass::ALL {
        assert_eq!(c.as_str().parse::<DeviceClass>(), Ok(c));
        assert_eq!(
            serde_json::to_string(&c).unwrap_or_default(),
            format!("\"{}\"", c.as_str())
        );
        assert_eq!(DeviceClass::from_code(c.code()), Some(c));
    }
    assert!("toaster".parse::<DeviceClass>().is_err());
    assert_eq!(
        serde_json::to_string(&ClassSource::Inferred).unwrap_or_default(),
        "\"inferred\""
    );
}

#[test]
fn inventory_precedence() {
    let inv = Inventory::parse(INV, "inv.toml").unwrap_or_default();
    assert_eq!(inv.len(), 5);
    let mac = parse_mac("02:00:5e:10:00:15").ok();
    // MAC beats IP: the camera's MAC at the PLC's address is still the camera.
    assert_eq!(
        inv.lookup(mac, ip("192.168.20.10"))
            .map(|e| e.name.as_str()),
        Some("cam-01")
    );
    // Exact IP beats CIDR.
    assert_eq!(
        inv.lookup(None, ip("192.168.10.21"))
            .map(|e| e.name.as_str()),
        Some("cam-01")
    );
    assert_eq!(
        inv.lookup(None, ip("192.168.20.10"))
            .map(|e| e.name.as_str()),
        Some("plc-01")
    );
    // Longest prefix.
    assert_eq!(
        inv.lookup(None, ip("192.168.10.200"))
            .map(|e| e.name.as_str()),
        Some("plug-corner")
    );
    assert_eq!(
        inv.lookup(None, ip("192.168.10.99"))
            .map(|e| e.name.as_str()),
        Some("plugs")
    );
    assert_eq!(
        inv.lookup(None, ip("fd00:1::42")).map(|e| e.class),
        Some(DeviceClass::Hub)
    );
    assert!(inv.lookup(None, ip("192.168.11.1")).is_none());
    assert!(inv.lookup(None, ip("8.8.8.8")).is_none());
}

fn err_of(text: &str) -> String {
    match Inventory::parse(text, "site/inv.toml") {
        Ok(_) => String::from("<no error>"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn inventory_errors_name_file_entry_and_key() {
    let e = err_of(
        "[[device]]\nname = \"a\"\nclass = \"camera\"\nip = \"10.0.0.1\"\nvendor = \"acme\"\n",
    );
    assert!(e.contains("site/inv.toml") && e.contains("vendor"), "{e}");
    let e = err_of("[[devices]]\nname = \"a\"\n");
    assert!(e.contains("devices"), "{e}");
    let e = err_of("[[device]]\nname = \"cam-9\"\nclass = \"camera\"\nmac = \"02:00:5e:10:00\"\n");
    assert!(
        e.contains("site/inv.toml") && e.contains("#1") && e.contains("cam-9") && e.contains("MAC"),
        "{e}"
    );
    let e = err_of("[[device]]\nname = \"x\"\nclass = \"camera\"\nip = \"10.0.0.1\"\n[[device]]\nname = \"t\"\nclass = \"toaster\"\nip = \"10.0.0.2\"\n");
    assert!(
        e.contains("#2") && e.contains("'t'") && e.contains("toaster"),
        "{e}"
    );
    let e = err_of("[[device]]\nname = \"x\"\nclass = \"plc\"\nip = \"10.0.0.256\"\n");
    assert!(e.contains("10.0.0.256"), "{e}");
    let e = err_of("[[device]]\nname = \"x\"\nclass = \"plc\"\ncidr = \"10.0.0.1/24\"\n");
    assert!(e.contains("host bits") && e.contains("10.0.0.0/24"), "{e}");
    let e = err_of("[[device]]\nname = \"x\"\nclass = \"plc\"\ncidr = \"10.0.0.0/33\"\n");
    assert!(e.contains("/33"), "{e}");
    let e = err_of("[[device]]\nname = \"x\"\nclass = \"plc\"\n");
    assert!(e.contains("at least one of"), "{e}");
    let e = err_of("[[device]]\nname = \"a\"\nclass = \"plc\"\nip = \"10.0.0.1\"\n[[device]]\nname = \"b\"\nclass = \"plc\"\nip = \"10.0.0.1\"\n");
    assert!(e.contains("already given") && e.contains("'a'"), "{e}");
    assert!(Inventory::parse("", "empty.toml").is_ok_and(|i| i.is_empty()));
}

#[test]
fn inventory_load_names_missing_file() {
    let e = Inventory::load(std::path::Path::new("/nonexistent/inv.toml"));
    assert!(e.is_err_and(|e| e.to_string().contains("/nonexistent/inv.toml")));
}

/// Synthetic traffic generators, one per behaviour.
#[derive(Clone, Copy, PartialEq)]
enum Gen {
    Camera,
    Plc,
    Hub,
    CloudSensor,
}

fn profile(gen: Gen, dev: Addr, rng: &mut ChaCha8Rng) -> DeviceProfile {
    let mut p = DeviceProfile::new();
    let n = rng.random_range(40..80);
    for i in 0..n {
        let t0 = f64::from(i) * 20_000.0 + rng.random_range(0.0..500.0);
        let jitter = rng.random_range(0.8..1.2);
        let (mut r, side) = match (gen, i % 4) {
            (Gen::Camera, 0 | 1) => (
                rec(proto::TCP, (v4(192, 168, 10, 2), 50000), (dev, 554)),
                Side::Resp,
            ),
            (Gen::Camera, 2) => (
                rec(proto::TCP, (dev, 40000), (v4(52, 10, 1, rng.random()), 443)),
                Side::Orig,
            ),
            (Gen::Camera, _) => (
                rec(proto::UDP, (dev, 123), (v4(192, 168, 10, 1), 123)),
                Side::Orig,
            ),
            (Gen::Plc, _) => (
                rec(proto::TCP, (v4(192, 168, 20, 5), 50000), (dev, 502)),
                Side::Resp,
            ),
            (Gen::Hub, 0) => (
                rec(proto::UDP, (dev, 5353), (v4(224, 0, 0, 251), 5353)),
                Side::Orig,
            ),
            (Gen::Hub, 1) => (
                rec(proto::UDP, (dev, 40000), (v4(239, 255, 255, 250), 1900)),
                Side::Orig,
            ),
            (Gen::Hub, 2) => (
                rec(
                    proto::TCP,
                    (dev, 40000),
                    (v4(192, 168, 10, rng.random_range(60..90)), 80),
                ),
                Side::Orig,
            ),
            (Gen::Hub, _) => (
                rec(proto::TCP, (v4(192, 168, 10, 7), 50000), (dev, 8080)),
                Side::Resp,
            ),
            (Gen::CloudSensor, 0 | 1) => (
                rec(proto::TCP, (dev, 40000), (v4(34, 2, 3, rng.random()), 8883)),
                Side::Orig,
            ),
            (Gen::CloudSensor, 2) => (
                rec(proto::TCP, (dev, 40000), (v4(34, 2, 3, 9), 443)),
                Side::Orig,
            ),
            (Gen::CloudSensor, _) => (
                rec(proto::UDP, (dev, 123), (v4(192, 168, 10, 1), 123)),
                Side::Orig,
            ),
        };
        let from_dev = side == Side::Orig;
        let (pkts, big) = match gen {
            Gen::Camera => (20, 1200.0),
            Gen::Plc => (8, 12.0),
            Gen::Hub => (4, 200.0),
            Gen::CloudSensor => (6, 80.0),
        };
        for k in 0..pkts {
            let pl = (big * jitter) as u32;
            // The camera streams towards its peer whichever side it is.
            let dev_sends = k % 2 == 0;
            let from_orig = if from_dev { dev_sends } else { !dev_sends };
            push(
                &mut r,
                from_orig,
                t0 + f64::from(k) * 100.0 * jitter,
                pl + 40,
                pl,
                0,
            );
        }
        p.observe(&r, side);
    }
    p
}

fn training_set(seed: u64) -> (Vec<DeviceProfile>, Vec<DeviceClass>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ps = Vec::new();
    let mut ls = Vec::new();
    for i in 0..8u8 {
        for (g, c) in [
            (Gen::Camera, DeviceClass::Camera),
            (Gen::Plc, DeviceClass::Plc),
            (Gen::Hub, DeviceClass::Hub),
            // Plugs and thermostats behave identically here: the model cannot tell them
            // apart and must abstain on such a device.
            (Gen::CloudSensor, DeviceClass::Plug),
            (Gen::CloudSensor, DeviceClass::Thermostat),
        ] {
            ps.push(profile(g, v4(192, 168, 30, i), &mut rng));
            ls.push(c);
        }
    }
    (ps, ls)
}

#[test]
fn profile_vector_is_finite_and_named() {
    let names = profile_feature_names();
    assert_eq!(names.len(), N_PROFILE_FEATURES);
    let empty = DeviceProfile::new().vector();
    assert_eq!(empty.len(), N_PROFILE_FEATURES);
    assert!(empty.iter().all(|x| *x == 0.0 || x.is_finite()));
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let p = profile(Gen::Plc, v4(192, 168, 20, 10), &mut rng);
    let v = p.vector();
    assert!(v.iter().all(|x| x.is_finite()));
    let at = |name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .map_or(f64::NAN, |i| v[i])
    };
    assert_eq!(at("served_502"), 1.0);
    assert_eq!(at("initiated_frac"), 0.0);
    assert_eq!(at("tcp_frac"), 1.0);
}

#[test]
fn inference_is_confident_on_a_clear_device_and_abstains_on_an_ambiguous_one() {
    let (ps, ls) = training_set(7);
    let model = match ClassInference::train(&ps, &ls, 42) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    assert!(model.validate().is_ok());
    assert_eq!(model.trees.len(), 50);
    let mut rng = ChaCha8Rng::seed_from_u64(999); // unseen devices
    for (g, c) in [
        (Gen::Camera, DeviceClass::Camera),
        (Gen::Plc, DeviceClass::Plc),
        (Gen::Hub, DeviceClass::Hub),
    ] {
        let p = profile(g, v4(192, 168, 40, 1), &mut rng);
        let (class, conf) = model.predict(&p);
        assert_eq!(class, c);
        assert!(conf >= 0.9, "{c}: {conf}");
    }
    let amb = profile(Gen::CloudSensor, v4(192, 168, 40, 2), &mut rng);
    let d = model.predict_detail(&amb);
    assert!(matches!(
        d.best,
        DeviceClass::Plug | DeviceClass::Thermostat
    ));
    assert_eq!(d.class, DeviceClass::Unknown, "{d:?}");
    assert!(d.confidence < 0.8, "{d:?}");
}

#[test]
fn inference_is_deterministic_and_serialises() {
    let (ps, ls) = training_set(3);
    let a = ClassInference::train(&ps, &ls, 5).ok();
    let b = ClassInference::train(&ps, &ls, 5).ok();
    assert!(a.is_some());
    assert_eq!(a, b);
    let ja = serde_json::to_string(&a).unwrap_or_default();
    assert_eq!(ja, serde_json::to_string(&b).unwrap_or_default());
    let back: Option<ClassInference> = serde_json::from_str(&ja).ok().flatten();
    assert_eq!(back, a);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let p = profile(Gen::Camera, v4(192, 168, 40, 3), &mut rng);
    if let (Some(a), Some(back)) = (&a, &back) {
        assert_eq!(a.predict(&p), back.predict(&p));
        // Another seed gives another bag.
        let c = ClassInference::train(&ps, &ls, 6).ok();
        assert_ne!(Some(a), c.as_ref());
        // A corrupted tree is refused.
        let mut bad = a.clone();
        if let Some(n) = bad
            .trees
            .iter_mut()
            .flat_map(|t| t.nodes.iter_mut())
            .find(|n| n.left != u32::MAX)
        {
            n.feature = 9999;
        }
        assert!(bad.validate().is_err());
        let mut bad = a.clone();
        bad.feature_names.pop();
        assert!(bad.validate().is_err());
    }
}

#[test]
fn inference_training_errors() {
    let (ps, ls) = training_set(3);
    assert!(ClassInference::train(&ps[..3], &ls[..2], 1).is_err());
    let one: Vec<DeviceClass> = vec![DeviceClass::Camera; ps.len()];
    assert!(ClassInference::train(&ps, &one, 1).is_err());
    let mut with_unknown = ls.clone();
    with_unknown[0] = DeviceClass::Unknown;
    assert!(ClassInference::train(&ps, &with_unknown, 1).is_err());
}

/// A TCP record of `pkts` small packets (12 payload bytes each), alternating from the
/// originator, 100 units of time apart from `t0` (Modbus-like polling).
fn request_reply(orig: (Addr, u16), resp: (Addr, u16), t0: f64, pkts: u32) -> FlowRecord {
    let mut f = rec(proto::TCP, orig, resp);
    for k in 0..pkts {
        push(&mut f, k % 2 == 0, t0 + f64::from(k) * 100.0, 52, 12, 0);
    }
    f
}

#[test]
fn resolver_rule() {
    let inv = Inventory::parse(INV, "inv.toml").unwrap_or_default();
    let (ps, ls) = training_set(7);
    let model = ClassInference::train(&ps, &ls, 42).ok();
    let mut r = DeviceResolver::new(inv, model, ResolverConfig::default());
    // Inventory camera talking to a public cloud peer: only the camera is monitored.
    let f = rec(
        proto::TCP,
        (ip("192.168.10.21"), 40000),
        (ip("52.1.2.3"), 443),
    );
    let m = r.monitored(&f);
    let (side, info) = m[0].clone().unwrap_or((
        Side::Resp,
        DeviceInfo {
            id: Arc::from(""),
            assignment: NOT_YET,
        },
    ));
    assert_eq!(side, Side::Orig);
    assert_eq!(&*info.id, "cam-01");
    assert_eq!(info.assignment.source, ClassSource::Inventory);
    assert_eq!(info.assignment.confidence, 1.0);
    assert!(m[1].is_none());
    // CIDR hosts are distinct devices.
    let f = rec(
        proto::UDP,
        (ip("192.168.10.200"), 1),
        (ip("224.0.0.251"), 5353),
    );
    let m = r.monitored(&f);
    assert_eq!(
        m[0].as_ref().map(|(_, d)| &*d.id),
        Some("plug-corner@192.168.10.200")
    );
    assert!(m[1].is_none(), "multicast is never a device");
    // An unlisted local PLC-like device: unknown until enough traffic, then inferred.
    let plc = v4(192, 168, 50, 9);
    let mut last = None;
    for i in 0..40 {
        let f = request_reply(
            (v4(192, 168, 50, 5), 50000),
            (plc, 502),
            f64::from(i) * 20_000.0,
            8,
        );
        let m = r.monitored(&f);
        if i == 0 {
            let d = m[1].as_ref().map(|(_, d)| d.assignment);
            assert_eq!(d.map(|a| a.source), Some(ClassSource::Unknown));
        }
        last = m[1].clone();
    }
    let d = last.map(|(_, d)| d.assignment);
    assert_eq!(
        d.map(|a| (a.class, a.source)),
        Some((DeviceClass::Plc, ClassSource::Inferred))
    );
    // The profile was dropped when the class was locked.
    assert!(r.profile(&plc).is_none());
    assert!(r.profiles().all(|(a, _)| *a != plc));
    // With score_unknown off, an abstained/unclassified device is not monitored.
    let mut r2 = DeviceResolver::new(
        Inventory::empty(),
        None,
        ResolverConfig {
            score_unknown: false,
            ..ResolverConfig::default()
        },
    );
    let f = rec(proto::TCP, (v4(10, 0, 0, 1), 1), (v4(10, 0, 0, 2), 80));
    assert!(r2.monitored(&f).iter().all(|m| m.is_none()));
}

/// The two-pass rule `monitored` is defined by: observe the record, then resolve
/// each side.
fn monitored_two_pass(r: &mut DeviceResolver, f: &FlowRecord) -> [Option<(Side, DeviceInfo)>; 2] {
    r.observe(f);
    [(Side::Orig, f.orig), (Side::Resp, f.resp)].map(|(side, ep)| {
        r.resolve(&ep)
            .filter(|d| d.assignment.class.is_iot() || r.cfg.score_unknown)
            .map(|d| (side, d))
    })
}

#[test]
fn one_pass_monitored_equals_observe_then_resolve() {
    // Random records over inventory hosts (exact and CIDR), unlisted local hosts that
    // get inferred, public and multicast peers, and records whose two sides are one
    // address (a third of them, 20 s apart, so a lock can fall on the second update of
    // such a record); a small profile cap so the "map full" path runs too.
    let (ps, ls) = training_set(7);
    let model = ClassInference::train(&ps, &ls, 42).ok();
    let inv = Inventory::parse(INV, "inv.toml").unwrap_or_default();
    for score_unknown in [true, false] {
        let cfg = ResolverConfig {
            max_profiles: 6,
            score_unknown,
        };
        let mut one = DeviceResolver::new(inv.clone(), model.clone(), cfg);
        let mut two = DeviceResolver::new(inv.clone(), model.clone(), cfg);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let hosts = [
            ip("192.168.10.21"),
            ip("192.168.10.200"),
            ip("192.168.20.10"),
            v4(192, 168, 50, 9),
            v4(192, 168, 50, 5),
            v4(10, 0, 0, 1),
            v4(10, 0, 0, 2),
            v4(10, 0, 0, 3),
            v4(10, 0, 0, 4),
            v4(10, 0, 0, 5),
            v4(10, 0, 0, 6),
            v4(10, 0, 0, 7),
            v4(52, 1, 2, 3),
            v4(224, 0, 0, 251),
        ];
        for i in 0..3000 {
            let a = hosts[rng.random_range(0..hosts.len())];
            let b = if rng.random_range(0..3) == 0 {
                a
            } else {
                hosts[rng.random_range(0..hosts.len())]
            };
            let f = request_reply((a, 40000), (b, 502), f64::from(i) * 20_000.0, 4);
            let got = one.monitored(&f);
            let want = monitored_two_pass(&mut two, &f);
            let show = |m: &[Option<(Side, DeviceInfo)>; 2]| {
                m.iter()
                    .map(|s| {
                        s.as_ref()
                            .map(|(side, d)| (*side, d.id.to_string(), d.assignment))
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                format!("{:?}", show(&got)),
                format!("{:?}", show(&want)),
                "record {i}"
            );
        }
        let p1: Vec<_> = one
            .profiles()
            .map(|(a, p)| (*a, format!("{p:?}")))
            .collect();
        let p2: Vec<_> = two
            .profiles()
            .map(|(a, p)| (*a, format!("{p:?}")))
            .collect();
        assert_eq!(p1, p2);
    }
}
