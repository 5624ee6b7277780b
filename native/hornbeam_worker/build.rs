//! Embeds the rpath of the libpython found at build time, so the binary
//! loads the same libpython at run time (pyenv / non-system builds).
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
