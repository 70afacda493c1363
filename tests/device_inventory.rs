//! The inventory file as the simulator writes it, loaded from disk.

use flowsentry::device::{parse_mac, DeviceClass, Inventory};
use flowsentry::packet::Addr;
use std::io::Write;

#[test]
fn loads_the_simulator_format_from_a_file() -> Result<(), Box<dyn std::error::Error>> {
    let mut f = tempfile::NamedTempFile::new()?;
    writeln!(
        f,
        r#"[[device]]
name = "cam-01"          # device id
class = "camera"
mac = "02:00:5e:10:00:15" # optional
ip = "192.168.10.21"      # optional

[[device]]
name = "lab"
class = "unknown"
cidr = "192.168.10.0/24"  # optional (a rule for a range)
"#
    )?;
    let inv = Inventory::load(f.path())?;
    assert_eq!(inv.len(), 2);
    let cam = inv.lookup(parse_mac("02:00:5e:10:00:15").ok(), Addr::v4([10, 9, 9, 9]));
    assert_eq!(cam.map(|e| e.class), Some(DeviceClass::Camera));
    let lab = inv.lookup(None, Addr::v4([192, 168, 10, 77]));
    assert_eq!(
        lab.map(|e| (e.name.as_str(), e.class)),
        Some(("lab", DeviceClass::Unknown))
    );
    Ok(())
}

#[test]
fn a_bad_entry_names_the_file_and_the_entry() -> Result<(), Box<dyn std::error::Error>> {
    let mut f = tempfile::NamedTempFile::new()?;
    writeln!(
        f,
        "[[device]]\nname = \"plc-7\"\nclass = \"plc\"\nip = \"10.0.0.999\""
    )?;
    let err = match Inventory::load(f.path()) {
        Ok(_) => return Err("accepted a bad IP".into()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&f.path().display().to_string()), "{err}");
    assert!(err.contains("plc-7") && err.contains("10.0.0.999"), "{err}");
    Ok(())
}
