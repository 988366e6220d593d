//! Build script: with the `cuda` feature, give the extension a RUNPATH to the CUDA library
//! folders of a typical GPU machine, so it finds libcublas/libcurand/libcudart there even
//! though it was linked against the toolkit wheels of the build machine
//! (`scripts/build-cuda.sh`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!(
            "cargo:rustc-link-arg-cdylib=-Wl,-rpath,/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:/usr/local/nvidia/lib64"
        );
    }
}
