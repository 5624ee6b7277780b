//! Embeds the rpath of the libpython found at build time, so the binary
//! loads the same libpython at run time (pyenv / non-system builds), and
//! records that Python's version and interpreter for `--python-version`
//! (Erlang checks a chosen interpreter or virtualenv against it).
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    println!(
        "cargo:rustc-env=HORNBEAM_PYTHON_VERSION={}.{}",
        config.version().major,
        config.version().minor
    );
    println!(
        "cargo:rustc-env=HORNBEAM_PYTHON_BUILT_WITH={}",
        config.executable().unwrap_or("")
    );
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
