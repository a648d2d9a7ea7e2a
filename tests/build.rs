//! Builds the guest programs the integration tests run (like wasmtime's test-programs):
//! `examples/hello`, the first-party plugins in `plugins/` and the plugins in `tests/guests/`, for `wasm32-wasip2`, in their own
//! target directory so the outer cargo's lock is never contended. Their paths reach the
//! tests as `env!("GUEST_WASM_<NAME>")`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("repo root").to_path_buf();
    let target = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    build(&cargo, &root.join("tests/guests/Cargo.toml"), &target);
    build(&cargo, &root.join("examples/hello/Cargo.toml"), &target);
    for plugin in ["consultation", "elderly-care", "parking"] {
        build(
            &cargo,
            &root.join(format!("plugins/{plugin}/Cargo.toml")),
            &target,
        );
    }

    for name in [
        "bench",
        "hostile",
        "spy",
        "hello",
        "hello_next",
        "consultation",
        "elderly_care",
        "parking",
    ] {
        let wasm = target
            .join("wasm32-wasip2/release")
            .join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "guest {name} was not built at {}",
            wasm.display()
        );
        println!(
            "cargo:rustc-env=GUEST_WASM_{}={}",
            name.to_uppercase(),
            wasm.display()
        );
    }
    for dir in ["tests/guests", "examples/hello", "plugins", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
}

fn build(cargo: &str, manifest: &Path, target: &Path) {
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        // Under `cargo clippy` the lint driver must not wrap the guest build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        .status()
        .expect("running cargo for the guest programs");
    assert!(
        status.success(),
        "building guests from {} failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)",
        manifest.display()
    );
}
