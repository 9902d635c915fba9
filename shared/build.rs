//! The settings page's strong ETags, computed when the crate is built: hashing its
//! 50 KB at start-up cost the `web` function 3.8 M instructions, seven times the
//! hello-world floor, for a value that only changes with the files themselves.

use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    println!("cargo:rerun-if-changed={}", web.display());
    // Regular files only: a directory or an editor's vanishing swap file is not served.
    let mut names: Vec<String> = std::fs::read_dir(&web)
        .expect("the web/ directory beside shared/")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut table = String::from("/// `(file name, strong ETag)` of each file in `web/`, written by build.rs.\n");
    table.push_str("const ETAGS: &[(&str, &str)] = &[\n");
    for name in names {
        let path = web.join(&name);
        println!("cargo:rerun-if-changed={}", path.display());
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let digest = Sha256::digest(bytes);
        let hex = digest[..16].iter().fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        });
        let _ = writeln!(table, "    ({name:?}, \"\\\"{hex}\\\"\"),");
    }
    table.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_etags.rs");
    std::fs::write(out, table).expect("OUT_DIR is writable");
}
