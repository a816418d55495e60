//! Compiles the vendored Kubernetes `.proto` files (proto/) into one FileDescriptorSet
//! (`$OUT_DIR/kubernetes.fds`), without source info, for the library to load once.

use std::path::{Path, PathBuf};

fn protos(dir: &Path, root: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            protos(&path, root, out)?;
        } else if path.extension().is_some_and(|e| e == "proto")
            && let Ok(relative) = path.strip_prefix(root)
        {
            out.push(relative.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let mut files = Vec::new();
    protos(&root, &root, &mut files)?;
    files.sort();
    let mut set = protox::compile(&files, [&root])?;
    for file in &mut set.file {
        file.source_code_info = None;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("kubernetes.fds");
    std::fs::write(out, prost::Message::encode_to_vec(&set))?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
