//! Compiles the kernel programs in `ebpf/` with clang. The toolchain here has no rust-src, so
//! the programs are C; `scripts/lib.sh` installs clang and libbpf's headers.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../ebpf/egress.bpf.c");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-env-changed=HUBGUARD_CLANG");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("egress.bpf.o");
    let clang = env::var("HUBGUARD_CLANG").unwrap_or_else(|_| "clang".to_string());
    let arch_include = format!(
        "/usr/include/{}-linux-gnu",
        env::var("CARGO_CFG_TARGET_ARCH").unwrap()
    );
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{}", target_arch_define()))
        .arg(format!("-I{arch_include}"))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile {} ({s})", source.display()),
        Err(e) => panic!(
            "cannot run '{clang}' to compile {}: {e}. Install clang and libbpf-dev (scripts/test does), or set HUBGUARD_CLANG",
            source.display()
        ),
    }
}

fn target_arch_define() -> &'static str {
    match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "arm64",
        _ => "x86",
    }
}
