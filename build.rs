//! Embeds `models/default.fsm` (the shipped default model) into the binary so
//! `flowsentry replay` works from any directory. If the file is absent the embedded model
//! is empty and the binary asks for `--model`.

fn main() {
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    let dest = std::path::Path::new(&out).join("default.fsm");
    let src = std::path::Path::new("models/default.fsm");
    println!("cargo:rerun-if-changed=models/default.fsm");
    println!("cargo:rerun-if-changed=build.rs");
    let bytes = std::fs::read(src).unwrap_or_default();
    if let Err(e) = std::fs::write(&dest, bytes) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
    }
}
